//! The node-rule table: for each ComfyUI node class, which of its inputs carry paths and how they
//! are confined to the caller's namespace (`prompt/rewrite.rs` applies the rules). Built-in rules cover
//! every core node of ComfyUI 0.3.64 that reads or writes files; operators add rules for custom
//! and API node classes in `warden.toml` (`[tenancy.nodes.<Class>]`), and a class listed there is
//! what allow-lists it for non-admins.
use std::collections::{BTreeMap, BTreeSet};

/// The hidden literal input added to every output node (`prompt/rewrite.rs` adds it; no rule may name
/// it). Undeclared literal inputs are ignored by ComfyUI's validation and execution but are
/// part of the cache signature.
pub const OWNER_INPUT: &str = "__warden_owner";

/// How one node class touches files. Every list names inputs of the class; a name may appear in
/// one list only (see [`NodeRule::check`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRule {
    /// Writers: `filename_prefix` / `prefix` → `NS/<value>` (missing → `NS/ComfyUI`).
    #[serde(default)]
    pub prefix_inputs: Vec<String>,
    /// Readers: (annotated) file references `sub/name.png [output]`; default kind input.
    #[serde(default)]
    pub file_inputs: Vec<String>,
    /// Input subfolder names (`LoadImageSetFromFolderNode.folder`) → `NS/<folder>`.
    #[serde(default)]
    pub folder_inputs: Vec<String>,
    /// Load3D `model_file`: `3d/x` → `3d/NS/x`.
    #[serde(default)]
    pub model3d_inputs: Vec<String>,
    /// Load3D `image` dict: its `image`, `mask`, `normal`, `lineart`, `recording` fields (when
    /// non-empty) are file references.
    #[serde(default)]
    pub dict_inputs: Vec<String>,
    /// Names that cannot be namespaced (`LossGraphNode.filename_prefix` is joined to the temp root
    /// with no check): only `^[A-Za-z0-9_-]{1,64}$` is accepted, and left as it is.
    #[serde(default)]
    pub strict_name_inputs: Vec<String>,
    /// Refused for non-admins whatever the class's origin.
    #[serde(default)]
    pub denied: bool,
    /// Declared to touch no files (for a custom node class: the operator vouches for it).
    #[serde(default)]
    pub pure: bool,
}

impl NodeRule {
    fn writer(input: &str) -> NodeRule {
        NodeRule {
            prefix_inputs: vec![input.into()],
            ..NodeRule::default()
        }
    }

    fn reader(input: &str) -> NodeRule {
        NodeRule {
            file_inputs: vec![input.into()],
            ..NodeRule::default()
        }
    }

    fn pure() -> NodeRule {
        NodeRule {
            pure: true,
            ..NodeRule::default()
        }
    }

    /// Every input name the rule treats as a path, with its list's name.
    pub fn path_inputs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let lists: [(&'static str, &Vec<String>); 6] = [
            ("prefix_inputs", &self.prefix_inputs),
            ("file_inputs", &self.file_inputs),
            ("folder_inputs", &self.folder_inputs),
            ("model3d_inputs", &self.model3d_inputs),
            ("dict_inputs", &self.dict_inputs),
            ("strict_name_inputs", &self.strict_name_inputs),
        ];
        lists
            .into_iter()
            .flat_map(|(list, names)| names.iter().map(move |n| (list, n.as_str())))
    }

    /// Whether the rule says anything about files: `pure`, or at least one path input. An empty
    /// rule in the configuration does not allow a custom class (the operator has to decide).
    pub fn is_declared(&self) -> bool {
        self.pure || self.path_inputs().next().is_some()
    }

    /// Consistency check for rules read from the configuration: `pure` with path inputs, an
    /// input listed twice, an empty input name or the reserved owner input are errors.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for (list, name) in self.path_inputs() {
            if name.is_empty() {
                return Err(format!("{list} contains an empty input name"));
            }
            if name == OWNER_INPUT {
                return Err(format!("{list}: '{name}' is reserved by comfy-warden"));
            }
            if !seen.insert(name) {
                return Err(format!("input '{name}' is listed more than once"));
            }
        }
        if self.pure && !seen.is_empty() {
            return Err("a rule with pure = true cannot list path inputs".into());
        }
        Ok(())
    }
}

/// `class_type` → rule, and which classes were configured by the operator.
#[derive(Debug, Clone, Default)]
pub struct NodeRules {
    rules: BTreeMap<String, NodeRule>,
    configured: BTreeSet<String>,
}

impl NodeRules {
    /// The rules for ComfyUI's own nodes (reference §3.5, ComfyUI 0.3.64).
    pub fn builtin() -> NodeRules {
        let mut rules = BTreeMap::new();
        let mut put = |class: &str, rule: NodeRule| {
            rules.insert(class.to_owned(), rule);
        };
        // Writers into output/ (model savers included: without NS, output/checkpoints/**,
        // output/loras/** … would become models for everyone).
        for class in [
            "SaveImage",
            "SaveLatent",
            "SaveAnimatedWEBP",
            "SaveAnimatedPNG",
            "SaveSVGNode",
            "SaveVideo",
            "SaveWEBM",
            "SaveAudio",
            "SaveAudioMP3",
            "SaveAudioOpus",
            "SaveGLB",
            "CheckpointSave",
            "CLIPSave",
            "VAESave",
            "ModelSave",
            "ImageOnlyCheckpointSave",
            "LoraSave",
        ] {
            put(class, NodeRule::writer("filename_prefix"));
        }
        put("SaveLoRANode", NodeRule::writer("prefix"));
        // Writes `temp/<prefix>_<date>.png` with no check at all: cannot be namespaced.
        put(
            "LossGraphNode",
            NodeRule {
                strict_name_inputs: vec!["filename_prefix".into()],
                ..NodeRule::default()
            },
        );
        // Previews write into the temp root under names ComfyUI picks (the ledger records them).
        // Preview3D* only echo `model_file` back in their UI result (no file is opened upstream;
        // the browser fetches it through /view, which the proxy confines), so they are pure and
        // may take a linked model_file, e.g. from Load3D.
        for class in [
            "PreviewImage",
            "MaskPreview",
            "PreviewAudio",
            "PreviewAny",
            "Preview3D",
            "Preview3DAnimation",
        ] {
            put(class, NodeRule::pure());
        }
        // Readers.
        for (class, input) in [
            ("LoadImage", "image"),
            ("LoadImageMask", "image"),
            ("LoadImageOutput", "image"),
            ("WebcamCapture", "image"),
            ("LoadLatent", "latent"),
            ("LoadAudio", "audio"),
            ("RecordAudio", "audio"),
            ("LoadVideo", "file"),
        ] {
            put(class, NodeRule::reader(input));
        }
        for class in ["Load3D", "Load3DAnimation"] {
            put(
                class,
                NodeRule {
                    model3d_inputs: vec!["model_file".into()],
                    dict_inputs: vec!["image".into()],
                    ..NodeRule::default()
                },
            );
        }
        for class in [
            "LoadImageSetFromFolderNode",
            "LoadImageTextSetFromFolderNode",
        ] {
            put(
                class,
                NodeRule {
                    folder_inputs: vec!["folder".into()],
                    ..NodeRule::default()
                },
            );
        }
        // API nodes reading top-level input files: denied for non-admins. For admins the path is
        // namespaced like any other reader (safe default; ComfyUI's combo lists the top level
        // only, so an operator who wants them must configure a rule of their own).
        for class in ["GeminiInputFiles", "OpenAIInputFiles"] {
            put(
                class,
                NodeRule {
                    denied: true,
                    ..NodeRule::reader("file")
                },
            );
        }
        NodeRules {
            rules,
            configured: BTreeSet::new(),
        }
    }

    /// The built-in rules plus the operator's (`[tenancy.nodes.<Class>]`); a configured rule
    /// replaces the built-in one for its class entirely.
    pub fn with_config(extra: &BTreeMap<String, NodeRule>) -> NodeRules {
        let mut rules = NodeRules::builtin();
        for (class, rule) in extra {
            rules.rules.insert(class.clone(), rule.clone());
            rules.configured.insert(class.clone());
        }
        rules
    }

    pub fn get(&self, class: &str) -> Option<&NodeRule> {
        self.rules.get(class)
    }

    /// True when the class's rule came from the configuration: that allow-lists a custom or API
    /// node class for non-admins.
    pub fn configured(&self, class: &str) -> bool {
        self.configured.contains(class)
    }

    /// Every class with a rule, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &NodeRule)> {
        self.rules.iter().map(|(c, r)| (c.as_str(), r))
    }
}

/// The `warden.toml` table that holds a class's rule, quoted when the class name is not a bare
/// TOML key: `[tenancy.nodes.MySaver]`, `[tenancy.nodes."My Saver"]`.
pub fn config_key(class: &str) -> String {
    let bare = !class.is_empty()
        && class
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        format!("[tenancy.nodes.{class}]")
    } else {
        let escaped: String = class
            .chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                '\\' => vec!['\\', '\\'],
                c if c.is_control() => format!("\\u{:04X}", u32::from(c)).chars().collect(),
                c => vec![c],
            })
            .collect();
        format!("[tenancy.nodes.\"{escaped}\"]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_covers_writers_readers_and_specials() {
        let r = NodeRules::builtin();
        assert_eq!(
            r.get("SaveImage").unwrap().prefix_inputs,
            ["filename_prefix"]
        );
        assert_eq!(
            r.get("CheckpointSave").unwrap().prefix_inputs,
            ["filename_prefix"]
        );
        assert_eq!(r.get("SaveLoRANode").unwrap().prefix_inputs, ["prefix"]);
        assert_eq!(
            r.get("LossGraphNode").unwrap().strict_name_inputs,
            ["filename_prefix"]
        );
        assert!(r.get("LossGraphNode").unwrap().prefix_inputs.is_empty());
        assert_eq!(r.get("LoadImage").unwrap().file_inputs, ["image"]);
        assert_eq!(r.get("WebcamCapture").unwrap().file_inputs, ["image"]);
        assert_eq!(r.get("RecordAudio").unwrap().file_inputs, ["audio"]);
        assert_eq!(r.get("LoadVideo").unwrap().file_inputs, ["file"]);
        assert_eq!(r.get("LoadLatent").unwrap().file_inputs, ["latent"]);
        let l3 = r.get("Load3DAnimation").unwrap();
        assert_eq!(
            (l3.model3d_inputs.as_slice(), l3.dict_inputs.as_slice()),
            (&["model_file".to_owned()][..], &["image".to_owned()][..])
        );
        assert_eq!(
            r.get("LoadImageTextSetFromFolderNode")
                .unwrap()
                .folder_inputs,
            ["folder"]
        );
        assert!(r.get("PreviewImage").unwrap().pure);
        assert!(r.get("Preview3D").unwrap().pure);
        assert!(r.get("GeminiInputFiles").unwrap().denied);
        assert!(r.get("OpenAIInputFiles").unwrap().denied);
        assert!(r.get("KSampler").is_none());
        for (class, rule) in r.iter() {
            rule.check().unwrap_or_else(|e| panic!("{class}: {e}"));
            assert!(rule.is_declared() || rule.denied, "{class}");
            assert!(!r.configured(class));
        }
    }

    #[test]
    fn config_rules_win_and_are_marked_configured() {
        let extra: BTreeMap<String, NodeRule> = toml::from_str(
            r#"
            [MySaver]
            prefix_inputs = ["filename_prefix"]
            [GeminiInputFiles]
            file_inputs = ["file"]
            [Pure]
            pure = true
            "#,
        )
        .unwrap();
        let r = NodeRules::with_config(&extra);
        assert!(r.configured("MySaver"));
        assert!(r.configured("GeminiInputFiles"));
        assert!(
            !r.get("GeminiInputFiles").unwrap().denied,
            "the configured rule replaces the built-in one"
        );
        assert!(r.get("Pure").unwrap().pure);
        assert!(!r.configured("SaveImage"));
        assert!(r.get("SaveImage").is_some());
    }

    #[test]
    fn unknown_rule_keys_are_refused() {
        let bad: Result<BTreeMap<String, NodeRule>, _> =
            toml::from_str("[X]\nprefix_input = [\"p\"]\n");
        assert!(bad.is_err());
    }

    #[test]
    fn check_finds_contradictions() {
        let both = NodeRule {
            pure: true,
            file_inputs: vec!["a".into()],
            ..NodeRule::default()
        };
        assert!(both.check().is_err());
        let twice = NodeRule {
            file_inputs: vec!["a".into()],
            prefix_inputs: vec!["a".into()],
            ..NodeRule::default()
        };
        assert!(twice.check().is_err());
        let empty = NodeRule {
            folder_inputs: vec![String::new()],
            ..NodeRule::default()
        };
        assert!(empty.check().is_err());
        let owner = NodeRule {
            file_inputs: vec!["__warden_owner".into()],
            ..NodeRule::default()
        };
        assert!(owner.check().is_err());
        assert!(NodeRule::default().check().is_ok());
        assert!(!NodeRule::default().is_declared());
    }

    #[test]
    fn config_keys_are_valid_toml() {
        assert_eq!(config_key("MySaver"), "[tenancy.nodes.MySaver]");
        assert_eq!(config_key("VHS_LoadVideo"), "[tenancy.nodes.VHS_LoadVideo]");
        assert_eq!(
            config_key("My Saver \"x\""),
            "[tenancy.nodes.\"My Saver \\\"x\\\"\"]"
        );
        for class in ["My Saver (v2)", "a.b", "é", "x\"\\\n"] {
            let doc = format!("{}\npure = true\n", config_key(class));
            let v: toml::Table = toml::from_str(&doc).unwrap();
            assert!(v["tenancy"]["nodes"].get(class).is_some(), "{doc}");
        }
    }
}
