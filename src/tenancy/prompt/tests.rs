use super::rewrite::strict_name;
use super::*;
use crate::tenancy::catalog::{Catalog, ClassInfo, Origin};
use crate::tenancy::nodes::{NodeRule, NodeRules, OWNER_INPUT};
use crate::tenancy::paths::*;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

const NS: &str = "u_alice";
const OWNED: &str = "ComfyUI_temp_owned_00001_.png";

fn catalog() -> Catalog {
    Catalog::from_object_info(&json!({
        "SaveImage": {"python_module": "nodes", "output_node": true},
        "PreviewImage": {"python_module": "nodes", "output_node": true},
        "LoadImage": {"python_module": "nodes", "output_node": false},
        "LoadImageOutput": {"python_module": "nodes", "output_node": false},
        "KSampler": {"python_module": "nodes", "output_node": false},
        "ImageInvert": {"python_module": "nodes", "output_node": false},
        "WebcamCapture": {"python_module": "comfy_extras.nodes_webcam", "output_node": false},
        "Load3D": {"python_module": "comfy_extras.nodes_load_3d", "output_node": false},
        "Preview3D": {"python_module": "comfy_extras.nodes_load_3d", "output_node": true},
        "LoadImageSetFromFolderNode": {"python_module": "comfy_extras.nodes_train", "output_node": false},
        "SaveLoRANode": {"python_module": "comfy_extras.nodes_train", "output_node": true},
        "LossGraphNode": {"python_module": "comfy_extras.nodes_train", "output_node": true},
        "RecordAudio": {"python_module": "comfy_extras.nodes_audio", "output_node": false},
        "LoadVideo": {"python_module": "comfy_extras.nodes_video", "output_node": false, "api_node": false},
        "MySaver": {"python_module": "custom_nodes.my_pack", "output_node": true},
        "MyPure": {"python_module": "custom_nodes.my_pack.sub", "output_node": false},
        "SaveImageWebsocket": {"python_module": "custom_nodes.websocket_image_save", "output_node": true},
        "FluxProUltraImageNode": {"python_module": "comfy_api_nodes.nodes_bfl", "output_node": false, "api_node": true},
        "GeminiInputFiles": {"python_module": "comfy_api_nodes.nodes_gemini", "output_node": false},
        "Weird": {"python_module": "somewhere_else", "output_node": false},
    }))
}

fn owns(kind: Kind, dir: &str, name: &str) -> bool {
    kind == Kind::Temp && dir.is_empty() && name == OWNED
}

fn run_with(
    prompt: Value,
    admin: bool,
    rules: &NodeRules,
    catalog: &Catalog,
) -> Result<Map<String, Value>, Refusal> {
    let mut p = prompt.as_object().unwrap().clone();
    let ctx = Caller {
        ns: NS,
        owner_tag: "tag-alice",
        catalog,
        rules,
        admin,
        owns_file: &owns,
    };
    rewrite(&mut p, &ctx).map(|()| p)
}

fn run(prompt: Value) -> Result<Map<String, Value>, Refusal> {
    run_with(prompt, false, &NodeRules::builtin(), &catalog())
}

fn one(class: &str, inputs: Value) -> Value {
    json!({ "1": { "class_type": class, "inputs": inputs } })
}

/// Rewrites a one-node graph and returns that input's new value.
fn input_after(class: &str, input: &str, value: Value) -> Result<Value, Refusal> {
    let p = run(one(class, json!({ input: value })))?;
    Ok(p["1"]["inputs"][input].clone())
}

fn refused(class: &str, input: &str, value: Value) -> Refusal {
    match input_after(class, input, value.clone()) {
        Err(r) => r,
        Ok(v) => panic!("{class}.{input} = {value} passed as {v}"),
    }
}

// ------------------------------------------------------------------ prefixes

#[test]
fn prefixes_are_namespaced() {
    for (client, up) in [
        ("alice/test", "u_alice/alice/test"),
        ("ComfyUI", "u_alice/ComfyUI"),
        ("%year%/%month%/x", "u_alice/%year%/%month%/x"),
        ("a/./b//c", "u_alice/a/b/c"),
        ("checkpoints/mine", "u_alice/checkpoints/mine"),
        ("日本/é", "u_alice/日本/é"),
    ] {
        assert_eq!(
            input_after("SaveImage", "filename_prefix", json!(client)).unwrap(),
            json!(up),
            "{client}"
        );
    }
}

#[test]
fn prefix_traversal_is_refused() {
    for bad in [
        "alice/../bob/x",
        "../x",
        "/srv/abs/x",
        "a\\..\\x",
        "c:x",
        "blake3:abc",
        "a\0b",
        "~root/x",
        "x/..",
    ] {
        let r = refused("SaveImage", "filename_prefix", json!(bad));
        assert_eq!(r.input.as_deref(), Some("filename_prefix"), "{bad}");
        assert_eq!(
            (r.node_id.as_str(), r.class_type.as_str()),
            ("1", "SaveImage")
        );
    }
}

#[test]
fn linked_prefix_is_refused() {
    let r = refused("SaveImage", "filename_prefix", json!(["5", 0]));
    assert!(r.message.contains("link"), "{}", r.message);
    assert_eq!(r.input.as_deref(), Some("filename_prefix"));
    refused("SaveImage", "filename_prefix", json!([5, 0]));
    refused("SaveImage", "filename_prefix", json!(["5", 0, 1]));
}

#[test]
fn non_string_prefix_is_refused() {
    for bad in [
        json!(5),
        json!(null),
        json!(true),
        json!({"a": 1}),
        json!({"__value__": 5}),
        json!({"__value__": ["5", 0]}),
    ] {
        refused("SaveImage", "filename_prefix", bad);
    }
}

#[test]
fn empty_and_folder_only_prefixes_get_a_file_name() {
    for (client, up) in [
        ("", "u_alice/ComfyUI"),
        (".", "u_alice/ComfyUI"),
        ("./", "u_alice/ComfyUI"),
        ("foo/", "u_alice/foo/ComfyUI"),
        ("foo//", "u_alice/foo/ComfyUI"),
        // What a naive proxy makes of an empty value: never the namespace root itself.
        ("u_alice/", "u_alice/ComfyUI"),
    ] {
        assert_eq!(
            input_after("SaveImage", "filename_prefix", json!(client)).unwrap(),
            json!(up),
            "{client:?}"
        );
    }
    let p = run(one("SaveImage", json!({ "images": ["2", 0] }))).unwrap();
    assert_eq!(
        p["1"]["inputs"]["filename_prefix"],
        json!("u_alice/ComfyUI"),
        "a missing prefix gets the default"
    );
}

#[test]
fn prefix_rewrite_is_idempotent() {
    assert_eq!(
        input_after("SaveImage", "filename_prefix", json!("u_alice/x")).unwrap(),
        json!("u_alice/x")
    );
    assert_eq!(
        input_after("SaveImage", "filename_prefix", json!("u_alice")).unwrap(),
        json!("u_alice/u_alice")
    );
    assert_eq!(
        input_after("SaveImage", "filename_prefix", json!("u_bob/x")).unwrap(),
        json!("u_alice/u_bob/x")
    );
}

#[test]
fn over_long_prefix_is_refused() {
    let long = format!("{}/x", "a".repeat(255));
    assert!(input_after("SaveImage", "filename_prefix", json!(long)).is_ok());
    refused("SaveImage", "filename_prefix", json!("a".repeat(256)));
    // Fits alone, not once namespaced.
    let near = "a/".repeat(500) + &"b".repeat(20);
    assert!(clean(&near).is_ok());
    refused("SaveImage", "filename_prefix", json!(near));
}

#[test]
fn save_lora_prefix_is_namespaced() {
    assert_eq!(
        input_after("SaveLoRANode", "prefix", json!("loras/mine")).unwrap(),
        json!("u_alice/loras/mine")
    );
    refused("SaveLoRANode", "prefix", json!(["3", 0]));
}

#[test]
fn wrapped_values_are_unwrapped() {
    assert_eq!(
        input_after("SaveImage", "filename_prefix", json!({"__value__": "x"})).unwrap(),
        json!("u_alice/x")
    );
    assert_eq!(
        input_after("LoadImage", "image", json!({"__value__": "pasted/x.png"})).unwrap(),
        json!("u_alice/pasted/x.png")
    );
    refused("SaveImage", "filename_prefix", json!({"__value__": "../x"}));
    refused(
        "LoadImage",
        "image",
        json!({"__value__": "/srv/outside.png"}),
    );
}

// ------------------------------------------------------------------ file references

#[test]
fn file_references_are_namespaced() {
    for (class, client, up) in [
        ("LoadImage", "pasted/x.png", "u_alice/pasted/x.png"),
        ("LoadImage", "x.png", "u_alice/x.png"),
        ("LoadImage", "./a//x.png", "u_alice/a/x.png"),
        ("LoadImage", "x.png [input]", "u_alice/x.png [input]"),
        (
            "LoadImage",
            "sub/x.png [output]",
            "u_alice/sub/x.png [output]",
        ),
        ("LoadImage", "3d/x.png", "3d/u_alice/x.png"),
        (
            "LoadImageOutput",
            "ComfyUI_00001_.png [output]",
            "u_alice/ComfyUI_00001_.png [output]",
        ),
        (
            "WebcamCapture",
            "webcam/a.png [temp]",
            "u_alice/webcam/a.png [temp]",
        ),
        (
            "RecordAudio",
            "audio/r.webm [temp]",
            "u_alice/audio/r.webm [temp]",
        ),
        ("LoadVideo", "v.mp4", "u_alice/v.mp4"),
    ] {
        let input = match class {
            "RecordAudio" => "audio",
            "LoadVideo" => "file",
            _ => "image",
        };
        assert_eq!(
            input_after(class, input, json!(client)).unwrap(),
            json!(up),
            "{class} {client}"
        );
    }
}

#[test]
fn file_references_outside_are_refused() {
    for bad in [
        "/srv/outside.png",
        "../x.png [temp]",
        "../user/default/x.png",
        "a/../../x.png",
        "",
        ".",
        " [temp]",
        "x[output]",
        "x.png[temp]",
        "a.png [temp] [temp]",
        "a.png [output] [input]",
        "blake3:0123",
        "c:\\x.png",
        "x\0.png",
    ] {
        let r = refused("LoadImage", "image", json!(bad));
        assert_eq!(r.input.as_deref(), Some("image"), "{bad:?}");
    }
    refused("LoadImage", "image", json!(["7", 0]));
    refused("LoadImage", "image", json!(42));
}

#[test]
fn file_reference_already_in_namespace_is_kept() {
    for v in [
        "u_alice/x.png",
        "u_alice/pasted/x.png [temp]",
        "3d/u_alice/x.png",
    ] {
        assert_eq!(
            input_after("LoadImage", "image", json!(v)).unwrap(),
            json!(v)
        );
    }
    assert_eq!(
        input_after("LoadImage", "image", json!("u_bob/x.png")).unwrap(),
        json!("u_alice/u_bob/x.png")
    );
}

#[test]
fn ledger_owned_files_outside_the_namespace_pass_unchanged() {
    let owned = format!("{OWNED} [temp]");
    assert_eq!(
        input_after("LoadImage", "image", json!(owned)).unwrap(),
        json!(owned)
    );
    assert_eq!(
        input_after("LoadImage", "image", json!(format!("./{owned}"))).unwrap(),
        json!(owned),
        "cleaned"
    );
    // Someone else's preview (or the same name in another root) goes into the namespace.
    let other = "ComfyUI_temp_other_00001_.png [temp]";
    assert_eq!(
        input_after("LoadImage", "image", json!(other)).unwrap(),
        json!(format!("u_alice/{other}"))
    );
    assert_eq!(
        input_after("LoadImage", "image", json!(OWNED)).unwrap(),
        json!(format!("u_alice/{OWNED}"))
    );
    assert_eq!(
        input_after("LoadImage", "image", json!(format!("{OWNED} [output]"))).unwrap(),
        json!(format!("u_alice/{OWNED} [output]"))
    );
}

#[test]
fn missing_reader_input_is_left_to_comfyui() {
    let p = run(one("LoadImage", json!({}))).unwrap();
    assert_eq!(p["1"]["inputs"], json!({}));
}

// ------------------------------------------------------------------ Load3D, folders, strict names

#[test]
fn load3d_model_file_and_image_dict() {
    let p = run(one(
        "Load3D",
        json!({
            "model_file": "3d/scene/x.glb",
            "image": {
                "image": "threed/i.png [temp]",
                "mask": "threed/m.png [temp]",
                "normal": "threed/n.png [temp]",
                "lineart": "threed/l.png [temp]",
                "recording": "",
                "camera_info": {"position": {"x": 1}},
            },
            "width": 1024,
            "height": 1024,
        }),
    ))
    .unwrap();
    let inputs = &p["1"]["inputs"];
    assert_eq!(inputs["model_file"], json!("3d/u_alice/scene/x.glb"));
    assert_eq!(
        inputs["image"],
        json!({
            "image": "u_alice/threed/i.png [temp]",
            "mask": "u_alice/threed/m.png [temp]",
            "normal": "u_alice/threed/n.png [temp]",
            "lineart": "u_alice/threed/l.png [temp]",
            "recording": "",
            "camera_info": {"position": {"x": 1}},
        })
    );
    assert_eq!(inputs["width"], json!(1024));
    assert!(inputs.get(OWNER_INPUT).is_none());
}

#[test]
fn file_locators_are_no_input_values() {
    let locator =
        json!({"filename": "ComfyUI_temp_abcde_00001_.png", "subfolder": "", "type": "temp"});
    let r = refused("Preview3D", "camera_info", locator.clone());
    assert_eq!(r.input.as_deref(), Some("camera_info"));
    refused(
        "Preview3D",
        "camera_info",
        json!({"__value__": {"x": [locator.clone()]}}),
    );
    refused(
        "Load3D",
        "image",
        json!({"image": "threed/i.png [temp]", "camera_info": locator.clone()}),
    );
    assert!(
        run_with(
            one("Preview3D", json!({"camera_info": locator})),
            true,
            &NodeRules::builtin(),
            &catalog()
        )
        .is_ok(),
        "admins may"
    );
}

#[test]
fn load3d_recording_and_wrapped_dict() {
    let v = input_after(
        "Load3D",
        "image",
        json!({"__value__": {"image": "threed/i.png [temp]", "recording": "threed/r.webm [temp]"}}),
    );
    assert_eq!(
        v.unwrap(),
        json!({"image": "u_alice/threed/i.png [temp]", "recording": "u_alice/threed/r.webm [temp]"})
    );
}

#[test]
fn load3d_refusals() {
    for bad in [
        "x.glb",
        "../3d/x.glb",
        "3d/../x.glb",
        "/input/3d/x.glb",
        "3d",
        "",
    ] {
        refused("Load3D", "model_file", json!(bad));
    }
    assert_eq!(
        input_after("Load3D", "model_file", json!("3d/u_alice/x.glb")).unwrap(),
        json!("3d/u_alice/x.glb")
    );
    assert_eq!(
        input_after("Load3D", "model_file", json!("3d/x.glb [output]")).unwrap(),
        json!("u_alice/3d/x.glb [output]")
    );
    refused("Load3D", "model_file", json!(["2", 0]));
    refused("Load3D", "image", json!(["2", 0]));
    refused("Load3D", "image", json!("threed/i.png [temp]"));
    refused("Load3D", "image", json!({"image": "../i.png [temp]"}));
    refused("Load3D", "image", json!({"mask": "/etc/passwd"}));
    refused("Load3D", "image", json!({"normal": 5}));
    let r = refused("Load3D", "image", json!({"recording": "/tmp/r.webm"}));
    assert!(r.message.starts_with("recording"), "{}", r.message);
}

#[test]
fn preview3d_is_pure_and_may_be_linked() {
    let p = run(one("Preview3D", json!({"model_file": ["1", 2]}))).unwrap();
    assert_eq!(p["1"]["inputs"]["model_file"], json!(["1", 2]));
    assert_eq!(p["1"]["inputs"][OWNER_INPUT], json!("tag-alice"));
}

#[test]
fn folders_are_namespaced() {
    for (client, up) in [
        ("alice", "u_alice/alice"),
        ("a/b", "u_alice/a/b"),
        ("", "u_alice"),
        ("3d", "3d/u_alice"),
        ("u_alice/x", "u_alice/x"),
    ] {
        assert_eq!(
            input_after("LoadImageSetFromFolderNode", "folder", json!(client)).unwrap(),
            json!(up),
            "{client:?}"
        );
    }
    for bad in [
        json!("../x"),
        json!("/srv"),
        json!("a\\b"),
        json!(["1", 0]),
        json!(1),
    ] {
        refused("LoadImageSetFromFolderNode", "folder", bad);
    }
}

#[test]
fn strict_names_only() {
    for ok in ["loss_graph", "A-1", &"x".repeat(64)] {
        assert_eq!(
            input_after("LossGraphNode", "filename_prefix", json!(ok)).unwrap(),
            json!(ok)
        );
    }
    for bad in [
        json!(""),
        json!("a/b"),
        json!("../x"),
        json!("a.b"),
        json!("é"),
        json!("x".repeat(65)),
        json!(["1", 0]),
    ] {
        refused("LossGraphNode", "filename_prefix", bad);
    }
    assert_eq!(
        input_after(
            "LossGraphNode",
            "filename_prefix",
            json!({"__value__": "g"})
        )
        .unwrap(),
        json!("g")
    );
}

// ------------------------------------------------------------------ classes

#[test]
fn custom_node_refused_with_config_key() {
    let r = run(one("MySaver", json!({"filename_prefix": "x"}))).unwrap_err();
    assert!(r.message.contains("MySaver"), "{}", r.message);
    assert!(
        r.message.contains("[tenancy.nodes.MySaver]"),
        "{}",
        r.message
    );
    assert!(r.message.contains("warden.toml"), "{}", r.message);
    assert_eq!(r.input, None);
    let r = run(one("SaveImageWebsocket", json!({"images": ["1", 0]}))).unwrap_err();
    assert!(
        r.message.contains("[tenancy.nodes.SaveImageWebsocket]"),
        "{}",
        r.message
    );
    let r = run(one("Weird", json!({}))).unwrap_err();
    assert!(r.message.contains("[tenancy.nodes.Weird]"), "{}", r.message);
}

#[test]
fn custom_node_allowed_when_configured() {
    let extra: BTreeMap<String, NodeRule> = toml::from_str(
        "[MySaver]\nprefix_inputs = [\"filename_prefix\"]\n[MyPure]\npure = true\n[SaveImageWebsocket]\npure = true\n",
    )
    .unwrap();
    let rules = NodeRules::with_config(&extra);
    let p = run_with(
        json!({
            "1": {"class_type": "MySaver", "inputs": {"filename_prefix": "out/x", "images": ["2", 0]}},
            "2": {"class_type": "MyPure", "inputs": {"anything": "/etc/passwd"}},
            "3": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["2", 0]}},
        }),
        false,
        &rules,
        &catalog(),
    )
    .unwrap();
    assert_eq!(p["1"]["inputs"]["filename_prefix"], json!("u_alice/out/x"));
    assert_eq!(p["1"]["inputs"][OWNER_INPUT], json!("tag-alice"));
    assert_eq!(
        p["2"]["inputs"],
        json!({"anything": "/etc/passwd"}),
        "pure: the operator vouched for it"
    );
    assert_eq!(p["3"]["inputs"][OWNER_INPUT], json!("tag-alice"));
    // Its paths are still checked.
    let r = run_with(
        one("MySaver", json!({"filename_prefix": ["9", 0]})),
        false,
        &rules,
        &catalog(),
    )
    .unwrap_err();
    assert_eq!(r.input.as_deref(), Some("filename_prefix"));
}

#[test]
fn empty_config_rule_does_not_allow() {
    let extra = BTreeMap::from([("MyPure".to_owned(), NodeRule::default())]);
    let r = run_with(
        one("MyPure", json!({})),
        false,
        &NodeRules::with_config(&extra),
        &catalog(),
    )
    .unwrap_err();
    assert!(
        r.message.contains("[tenancy.nodes.MyPure]"),
        "{}",
        r.message
    );
}

#[test]
fn api_nodes_refused() {
    let r = run(one("FluxProUltraImageNode", json!({"prompt": "cat"}))).unwrap_err();
    assert!(r.message.contains("API node"), "{}", r.message);
    assert!(
        r.message.contains("[tenancy.nodes.FluxProUltraImageNode]"),
        "{}",
        r.message
    );
    // python_module alone is enough (no api_node flag on the input-file helpers).
    let r = run(one("GeminiInputFiles", json!({"file": "a.pdf"}))).unwrap_err();
    assert!(
        r.message.contains("[tenancy.nodes.GeminiInputFiles]"),
        "{}",
        r.message
    );
    let extra = BTreeMap::from([(
        "FluxProUltraImageNode".to_owned(),
        NodeRule {
            pure: true,
            ..NodeRule::default()
        },
    )]);
    let rules = NodeRules::with_config(&extra);
    assert!(
        run_with(
            one("FluxProUltraImageNode", json!({"prompt": "cat"})),
            false,
            &rules,
            &catalog()
        )
        .is_ok()
    );
}

#[test]
fn denied_rules_refuse_non_admins_only() {
    let extra = BTreeMap::from([(
        "KSampler".to_owned(),
        NodeRule {
            denied: true,
            pure: true,
            ..NodeRule::default()
        },
    )]);
    let rules = NodeRules::with_config(&extra);
    let r = run_with(one("KSampler", json!({})), false, &rules, &catalog()).unwrap_err();
    assert!(r.message.contains("KSampler"), "{}", r.message);
    assert!(run_with(one("KSampler", json!({})), true, &rules, &catalog()).is_ok());
    // A configured Gemini rule that keeps `denied` still refuses.
    let extra = BTreeMap::from([(
        "GeminiInputFiles".to_owned(),
        NodeRule {
            denied: true,
            ..NodeRule::default()
        },
    )]);
    let rules = NodeRules::with_config(&extra);
    assert!(
        run_with(
            one("GeminiInputFiles", json!({"file": "a.pdf"})),
            false,
            &rules,
            &catalog()
        )
        .is_err()
    );
}

#[test]
fn admins_may_use_any_known_class_but_stay_namespaced() {
    let rules = NodeRules::builtin();
    let cat = catalog();
    let p = run_with(
        json!({
            "1": {"class_type": "MySaver", "inputs": {"filename_prefix": "x"}},
            "2": {"class_type": "FluxProUltraImageNode", "inputs": {}},
            "3": {"class_type": "GeminiInputFiles", "inputs": {"file": "a.pdf"}},
            "4": {"class_type": "SaveImage", "inputs": {"filename_prefix": ""}},
            "5": {"class_type": "Weird", "inputs": {}},
        }),
        true,
        &rules,
        &cat,
    )
    .unwrap();
    assert_eq!(
        p["1"]["inputs"]["filename_prefix"],
        json!("x"),
        "no rule: nothing to rewrite"
    );
    assert_eq!(p["3"]["inputs"]["file"], json!("u_alice/a.pdf"));
    assert_eq!(
        p["4"]["inputs"]["filename_prefix"],
        json!("u_alice/ComfyUI")
    );
    assert!(
        run_with(
            one("SaveImage", json!({"filename_prefix": "../x"})),
            true,
            &rules,
            &cat
        )
        .is_err()
    );
    assert!(
        run_with(
            one("LoadImage", json!({"image": "/srv/outside.png"})),
            true,
            &rules,
            &cat
        )
        .is_err()
    );
    assert!(run_with(one("NoSuchNode", json!({})), true, &rules, &cat).is_err());
}

#[test]
fn unknown_class_and_empty_catalog_are_refused() {
    let r = run(one("NoSuchNode", json!({}))).unwrap_err();
    assert!(r.message.contains("unknown node class"), "{}", r.message);
    assert_eq!(r.class_type, "NoSuchNode");
    let empty = Catalog::default();
    for admin in [false, true] {
        let r = run_with(
            one("KSampler", json!({})),
            admin,
            &NodeRules::builtin(),
            &empty,
        )
        .unwrap_err();
        assert!(r.message.contains("not available"), "{}", r.message);
    }
    assert!(
        run_with(json!({}), false, &NodeRules::builtin(), &empty).is_ok(),
        "an empty graph: ComfyUI answers"
    );
}

#[test]
fn malformed_nodes_are_refused() {
    for (node, what) in [
        (json!("x"), "object"),
        (json!(["KSampler"]), "object"),
        (json!({"inputs": {}}), "class_type"),
        (json!({"class_type": 5, "inputs": {}}), "class_type"),
        (json!({"class_type": "KSampler"}), "inputs"),
        (json!({"class_type": "KSampler", "inputs": []}), "inputs"),
        (json!({"class_type": "KSampler", "inputs": "x"}), "inputs"),
    ] {
        let r = run(json!({ "n-1": node })).unwrap_err();
        assert!(r.message.contains(what), "{node}: {}", r.message);
        assert_eq!(r.node_id, "n-1");
    }
}

// ------------------------------------------------------------------ owner input, shape

#[test]
fn owner_input_only_on_output_nodes() {
    let p = run(json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "x.png", OWNER_INPUT: "forged"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["2", 0], OWNER_INPUT: "u_bob"}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }))
    .unwrap();
    assert!(
        p["1"]["inputs"].get(OWNER_INPUT).is_none(),
        "client-sent owner input removed"
    );
    assert!(p["2"]["inputs"].get(OWNER_INPUT).is_none());
    assert_eq!(
        p["3"]["inputs"][OWNER_INPUT],
        json!("tag-alice"),
        "forged owner overwritten"
    );
    assert_eq!(p["4"]["inputs"][OWNER_INPUT], json!("tag-alice"));
}

#[test]
fn extra_keys_and_meta_are_kept() {
    let p = run(json!({
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["2", 0], "extra": {"k": 1}},
              "_meta": {"title": "Save"}, "is_changed": ["abc"]},
        "2": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["4", 0]}},
    }))
    .unwrap();
    assert_eq!(p["9"]["_meta"], json!({"title": "Save"}));
    assert_eq!(p["9"]["is_changed"], json!(["abc"]));
    assert_eq!(p["9"]["inputs"]["extra"], json!({"k": 1}));
    assert_eq!(p["9"]["inputs"]["images"], json!(["2", 0]));
    assert_eq!(p["2"]["inputs"], json!({"seed": 1, "model": ["4", 0]}));
}

#[test]
fn refused_graph_is_left_untouched() {
    let original = json!({
        "1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "../x.png"}},
    });
    let mut p = original.as_object().unwrap().clone();
    let (rules, cat) = (NodeRules::builtin(), catalog());
    let ctx = Caller {
        ns: NS,
        owner_tag: "t",
        catalog: &cat,
        rules: &rules,
        admin: false,
        owns_file: &owns,
    };
    let r = rewrite(&mut p, &ctx).unwrap_err();
    assert_eq!(r.node_id, "2");
    assert_eq!(Value::Object(p), original);
}

#[test]
fn refusal_in_comfy_shape() {
    let r = Refusal {
        node_id: "3".into(),
        class_type: "LoadImage".into(),
        input: Some("image".into()),
        message: "'..' is not allowed in paths".into(),
    };
    let v = r.to_comfy_error();
    assert_eq!(v["error"]["type"], json!("prompt_refused"));
    assert_eq!(v["error"]["message"], json!(r.message));
    assert_eq!(
        v["error"]["details"],
        json!("Node ID '#3' (LoadImage), input 'image'")
    );
    assert_eq!(v["error"]["extra_info"], json!({}));
    let n = &v["node_errors"]["3"];
    assert_eq!(n["class_type"], json!("LoadImage"));
    assert_eq!(n["dependent_outputs"], json!([]));
    assert_eq!(n["errors"][0]["type"], json!("prompt_refused"));
    assert_eq!(n["errors"][0]["message"], json!(r.message));
    assert_eq!(n["errors"][0]["details"], json!("image"));
    assert_eq!(n["errors"][0]["extra_info"], json!({"input_name": "image"}));
    let v = Refusal {
        input: None,
        class_type: String::new(),
        ..r
    }
    .to_comfy_error();
    assert_eq!(v["node_errors"]["3"]["errors"][0]["extra_info"], json!({}));
    assert_eq!(v["error"]["details"], json!("Node ID '#3'"));
}

// ------------------------------------------------------------------ strip

fn every_kind() -> Value {
    json!({
        "1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "alice/%year%/x", "images": ["2", 0]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "pasted/x.png"}},
        "3": {"class_type": "LoadImageOutput", "inputs": {"image": "ComfyUI_00001_.png [output]"}},
        "4": {"class_type": "WebcamCapture", "inputs": {"image": "webcam/a.png [temp]", "width": 0}},
        "5": {"class_type": "LoadImage", "inputs": {"image": "3d/tex.png"}},
        "6": {"class_type": "LoadImage", "inputs": {"image": format!("{OWNED} [temp]")}},
        "7": {"class_type": "Load3D", "inputs": {
            "model_file": "3d/scene/x.glb",
            "image": {"image": "threed/i.png [temp]", "mask": "threed/m.png [temp]", "normal": "threed/n.png [temp]",
                      "lineart": "threed/l.png [temp]", "recording": "", "camera_info": null}}},
        "8": {"class_type": "LoadImageSetFromFolderNode", "inputs": {"folder": "set1"}},
        "9": {"class_type": "SaveLoRANode", "inputs": {"prefix": "loras/mine", "lora": ["10", 0]}},
        "10": {"class_type": "LossGraphNode", "inputs": {"filename_prefix": "loss", "loss": ["11", 1]}},
        "11": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        "12": {"class_type": "LoadVideo", "inputs": {"file": "clips/v.mp4"}},
        "13": {"class_type": "RecordAudio", "inputs": {"audio": "audio/r.webm [temp]"}},
        "14": {"class_type": "Preview3D", "inputs": {"model_file": "mesh/x.glb"}},
        "15": {"class_type": "LoadImageSetFromFolderNode", "inputs": {"folder": "3d/set"}},
    })
}

#[test]
fn strip_inverts_rewrite_for_every_path_kind() {
    let original = every_kind();
    let rewritten = run(original.clone()).unwrap();
    let dump = serde_json::to_string(&rewritten).unwrap();
    assert!(
        dump.contains("u_alice/pasted/x.png") && dump.contains("3d/u_alice/scene/x.glb"),
        "{dump}"
    );
    let mut back = rewritten.clone();
    strip(&mut back, NS, &NodeRules::builtin());
    assert_eq!(Value::Object(back.clone()), original);
    assert!(!serde_json::to_string(&back).unwrap().contains(OWNER_INPUT));
    // And rewriting the stripped graph gives the same upstream graph again.
    let again = run(Value::Object(back)).unwrap();
    assert_eq!(again, rewritten);
}

#[test]
fn strip_leaves_values_outside_the_namespace() {
    let mut p = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "u_bob/x.png", OWNER_INPUT: "t"}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "elsewhere/x", OWNER_INPUT: "t"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "Load3D", "inputs": {"image": "weird", "model_file": "3d/u_bob/x.glb"}},
        "5": "not a node",
        "6": {"class_type": "Unknown", "inputs": {"image": "u_alice/x.png", OWNER_INPUT: "t"}},
        "7": {"class_type": "SaveImage", "inputs": {"filename_prefix": {"__value__": "u_alice/w"}}},
        "8": {"class_type": "LoadImageSetFromFolderNode", "inputs": {"folder": "u_alice"}},
    })
    .as_object()
    .unwrap()
    .clone();
    strip(&mut p, NS, &NodeRules::builtin());
    assert_eq!(
        Value::Object(p),
        json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": "u_bob/x.png"}},
            "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "elsewhere/x"}},
            "3": {"class_type": "LoadImage", "inputs": {"image": ["1", 0]}},
            "4": {"class_type": "Load3D", "inputs": {"image": "weird", "model_file": "3d/u_bob/x.glb"}},
            "5": "not a node",
            "6": {"class_type": "Unknown", "inputs": {"image": "u_alice/x.png"}},
            "7": {"class_type": "SaveImage", "inputs": {"filename_prefix": "w"}},
            "8": {"class_type": "LoadImageSetFromFolderNode", "inputs": {"folder": ""}},
        })
    );
}

// ------------------------------------------------------------------ catalog

#[test]
fn catalog_origins_and_defaults() {
    let cat = catalog();
    assert_eq!(cat.get("SaveImage").unwrap().origin(), Origin::Core);
    assert_eq!(cat.get("Load3D").unwrap().origin(), Origin::Core);
    assert_eq!(cat.get("MySaver").unwrap().origin(), Origin::Custom);
    assert_eq!(cat.get("MyPure").unwrap().origin(), Origin::Custom);
    assert_eq!(
        cat.get("FluxProUltraImageNode").unwrap().origin(),
        Origin::Api
    );
    assert_eq!(cat.get("GeminiInputFiles").unwrap().origin(), Origin::Api);
    assert_eq!(cat.get("Weird").unwrap().origin(), Origin::Other);
    let odd = Catalog::from_object_info(&json!({
        "A": {}, "B": {"python_module": "nodes", "output_node": "yes"}, "C": "x",
        "D": {"python_module": "nodes_extra"}, "E": {"python_module": "comfy_extras_evil.x"},
        "F": {"python_module": "nodes", "api_node": true, "output_node": false},
    }));
    assert_eq!(
        odd.get("A").unwrap(),
        &ClassInfo {
            python_module: String::new(),
            output_node: true,
            api_node: false
        }
    );
    assert_eq!(odd.get("A").unwrap().origin(), Origin::Other);
    assert!(
        odd.get("B").unwrap().output_node,
        "unreadable output_node counts as an output node"
    );
    assert!(odd.get("C").is_none());
    assert_eq!(odd.get("D").unwrap().origin(), Origin::Other);
    assert_eq!(odd.get("E").unwrap().origin(), Origin::Other);
    assert_eq!(odd.get("F").unwrap().origin(), Origin::Api);
    assert!(Catalog::from_object_info(&json!([])).is_empty());
    assert!(!odd.is_empty());
}

fn real_catalog() -> Catalog {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/comfyui-0.3.64/object_info.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    Catalog::from_object_info(&v["body"])
}

#[test]
fn builtin_rules_match_the_real_catalog() {
    let cat = real_catalog();
    assert!(!cat.is_empty());
    let mut absent = Vec::new();
    let rules = NodeRules::builtin();
    for (class, rule) in rules.iter() {
        let Some(info) = cat.get(class) else {
            absent.push(class);
            continue;
        };
        let family = match class {
            "SaveImage" | "SaveLatent" | "PreviewImage" | "LoadImage" | "LoadImageMask"
            | "LoadImageOutput" | "LoadLatent" => "nodes",
            "GeminiInputFiles" | "OpenAIInputFiles" => "comfy_api_nodes.",
            _ => "comfy_extras.",
        };
        assert!(
            info.python_module.starts_with(family),
            "{class}: {}",
            info.python_module
        );
        if !rule.denied {
            assert_eq!(info.origin(), Origin::Core, "{class}");
        }
        if !rule.prefix_inputs.is_empty() || !rule.strict_name_inputs.is_empty() {
            assert!(
                info.output_node,
                "{class} writes files and must carry the owner input"
            );
        }
        if !rule.file_inputs.is_empty()
            || !rule.model3d_inputs.is_empty()
            || !rule.folder_inputs.is_empty()
        {
            assert!(!info.output_node, "{class}");
        }
    }
    // nodes_audio did not import in the recorded environment (torchaudio mismatch).
    assert_eq!(
        absent,
        [
            "LoadAudio",
            "PreviewAudio",
            "RecordAudio",
            "SaveAudio",
            "SaveAudioMP3",
            "SaveAudioOpus"
        ]
    );
    for class in [
        "SaveImage",
        "PreviewImage",
        "MaskPreview",
        "Preview3D",
        "SaveLoRANode",
    ] {
        assert!(cat.get(class).unwrap().output_node, "{class}");
    }
    assert_eq!(
        cat.get("SaveImageWebsocket").unwrap().origin(),
        Origin::Custom
    );
    assert_eq!(cat.get("KSampler").unwrap().origin(), Origin::Core);
    assert!(!cat.get("KSampler").unwrap().output_node);
}

#[test]
fn recorded_prompt_passes_against_the_real_catalog() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/comfyui-0.3.64/prompt_post.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let p = run_with(
        v["request"]["json"]["prompt"].clone(),
        false,
        &NodeRules::builtin(),
        &real_catalog(),
    )
    .unwrap();
    assert_eq!(p["1"]["inputs"], json!({"image": "u_alice/alice/cat.png"}));
    assert_eq!(p["2"]["inputs"], json!({"image": ["1", 0]}));
    assert_eq!(
        p["3"]["inputs"],
        json!({"filename_prefix": "u_alice/alice/inverted", "images": ["2", 0], OWNER_INPUT: "tag-alice"})
    );
    assert_eq!(
        p["4"]["inputs"],
        json!({"images": ["1", 0], OWNER_INPUT: "tag-alice"})
    );
    let r = run_with(
        one("SaveImageWebsocket", json!({"images": ["1", 0]})),
        false,
        &NodeRules::builtin(),
        &real_catalog(),
    );
    assert!(r.is_err());
    let r = run_with(
        one("OpenAIInputFiles", json!({"file": "a.txt"})),
        false,
        &NodeRules::builtin(),
        &real_catalog(),
    );
    assert!(r.is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    const NS: &str = "u_alice";
    const OWNED: &str = "ComfyUI_temp_owned_00001_.png";
    const OWNED_REF: &str = "ComfyUI_temp_owned_00001_.png [temp]";

    /// Fragments that have tripped path handling before.
    const TOKENS: &[&str] = &[
        "..",
        ".",
        "/",
        "//",
        "%",
        "%year%",
        "%batch_num%",
        "\\",
        "[temp]",
        " [temp]",
        " [output]",
        " [input]",
        "[output]",
        "a",
        "x.png",
        "é",
        "日本",
        "\u{202e}",
        "u_alice",
        "u_alice/",
        "u_bob",
        "3d",
        "3d/",
        "threed",
        "blake3:",
        ":",
        "\0",
        "~",
        " ",
        "\n",
        OWNED,
        OWNED_REF,
    ];

    fn tricky() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "\\PC{0,30}",
            prop::collection::vec(prop::sample::select(TOKENS), 0..12).prop_map(|v| v.concat()),
        ]
    }

    /// A string as a plain literal, wrapped in `__value__`, or as a link-shaped list.
    fn shaped() -> impl Strategy<Value = Value> {
        (tricky(), 0..4u8).prop_map(|(s, how)| match how {
            0 | 1 => json!(s),
            2 => json!({ "__value__": s }),
            _ => json!([s, 0]),
        })
    }

    fn catalog() -> Catalog {
        Catalog::from_object_info(&json!({
            "SaveImage": {"python_module": "nodes", "output_node": true},
            "PreviewImage": {"python_module": "nodes", "output_node": true},
            "LoadImage": {"python_module": "nodes", "output_node": false},
            "KSampler": {"python_module": "nodes", "output_node": false},
            "Load3D": {"python_module": "comfy_extras.nodes_load_3d", "output_node": false},
            "LoadImageSetFromFolderNode": {"python_module": "comfy_extras.nodes_train", "output_node": false},
            "LossGraphNode": {"python_module": "comfy_extras.nodes_train", "output_node": true},
            "MySaver": {"python_module": "custom_nodes.pack", "output_node": true},
        }))
    }

    fn owns(kind: Kind, dir: &str, name: &str) -> bool {
        kind == Kind::Temp && dir.is_empty() && name == OWNED
    }

    fn rewritten(prompt: &Map<String, Value>) -> Result<Map<String, Value>, Refusal> {
        let (rules, cat) = (NodeRules::builtin(), catalog());
        let ctx = Caller {
            ns: NS,
            owner_tag: "tag",
            catalog: &cat,
            rules: &rules,
            admin: false,
            owns_file: &owns,
        };
        let mut p = prompt.clone();
        rewrite(&mut p, &ctx).map(|()| p)
    }

    fn one(class: &str, input: &str, v: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "1".into(),
            json!({ "class_type": class, "inputs": { input: v } }),
        );
        m
    }

    /// What ComfyUI 0.3.64 does with a file reference: `annotated_filepath` tests
    /// `endswith("[output]")` and cuts a fixed 9/8/7 characters, then `os.path.join(root, name)`
    /// and the OS resolves `.` and `..`. Returns the root and the segments below it, or `None`
    /// when the reference lands outside every root.
    fn comfy_target(v: &str) -> Option<(Kind, Vec<String>)> {
        let chars: Vec<char> = v.chars().collect();
        let cut = |n: usize| {
            chars[..chars.len().saturating_sub(n)]
                .iter()
                .collect::<String>()
        };
        let (kind, name) = if v.ends_with("[output]") {
            (Kind::Output, cut(9))
        } else if v.ends_with("[input]") {
            (Kind::Input, cut(8))
        } else if v.ends_with("[temp]") {
            (Kind::Temp, cut(7))
        } else {
            (Kind::Input, v.to_owned())
        };
        if name.starts_with('/') {
            return None;
        }
        let mut segs: Vec<String> = Vec::new();
        for s in name.split('/') {
            match s {
                "" | "." => {}
                ".." => {
                    segs.pop()?;
                }
                s => segs.push(s.to_owned()),
            }
        }
        Some((kind, segs))
    }

    /// Whether a rewritten file reference can only reach the caller's files.
    fn confined_ref(v: &str) -> bool {
        if v == OWNED_REF {
            return true;
        }
        let (path, ann) = split_annotation(v);
        let kind = ann.unwrap_or(Kind::Input);
        let textual = path.starts_with(&format!("{NS}/"))
            || (kind == Kind::Input && path.starts_with(&format!("3d/{NS}/")));
        let canonical = clean(path).as_deref() == Ok(path);
        let resolved = match comfy_target(v) {
            Some((k, segs)) => {
                k == kind
                    && ((segs.len() >= 2 && segs[0] == NS)
                        || (k == Kind::Input
                            && segs.len() >= 3
                            && segs[0] == "3d"
                            && segs[1] == NS))
            }
            None => false,
        };
        textual && canonical && resolved
    }

    /// Whether a rewritten prefix can only write below the caller's output folder, after
    /// ComfyUI's `%var%` expansion and `normpath`.
    fn confined_prefix(v: &str) -> bool {
        if !v.starts_with(&format!("{NS}/"))
            || clean(v).as_deref() != Ok(v)
            || v.split('/').any(|s| s == "..")
        {
            return false;
        }
        let expanded = [
            "%year%", "%month%", "%day%", "%hour%", "%minute%", "%second%", "%width%", "%height%",
        ]
        .iter()
        .fold(v.to_owned(), |acc, var| acc.replace(var, "2026"));
        let segs: Vec<&str> = expanded
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        segs.len() >= 2 && segs[0] == NS && !segs.contains(&"..")
    }

    proptest! {
        // A fixed seed keeps CI deterministic; change it (or set PROPTEST_CASES) to explore more.
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x00c0_ffee),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn save_image_prefix_is_confined(v in shaped()) {
            if let Ok(p) = rewritten(&one("SaveImage", "filename_prefix", v.clone())) {
                let out = &p["1"]["inputs"]["filename_prefix"];
                let s = out.as_str().unwrap_or_else(|| panic!("{v} → {out}"));
                prop_assert!(confined_prefix(s), "{:?} → {:?}", v, s);
                prop_assert!(!v.is_array(), "a link passed: {}", v);
                prop_assert_eq!(&p["1"]["inputs"][OWNER_INPUT], &json!("tag"));
            }
        }

        #[test]
        fn load_image_reference_is_confined(v in shaped()) {
            if let Ok(p) = rewritten(&one("LoadImage", "image", v.clone())) {
                let out = &p["1"]["inputs"]["image"];
                let s = out.as_str().unwrap_or_else(|| panic!("{v} → {out}"));
                prop_assert!(confined_ref(s), "{:?} → {:?}", v, s);
                prop_assert!(!v.is_array(), "a link passed: {}", v);
            }
        }

        #[test]
        fn load3d_inputs_are_confined(model in shaped(), image in tricky(), mask in tricky()) {
            let mut m = Map::new();
            m.insert("1".into(), json!({"class_type": "Load3D", "inputs": {
                "model_file": model, "image": {"image": image, "mask": mask, "recording": ""}}}));
            if let Ok(p) = rewritten(&m) {
                let inputs = &p["1"]["inputs"];
                let model = inputs["model_file"].as_str().unwrap_or_default();
                prop_assert!(confined_ref(model), "{:?}", model);
                for field in ["image", "mask"] {
                    let s = inputs["image"][field].as_str().unwrap_or_default();
                    prop_assert!(s.is_empty() || confined_ref(s), "{} = {:?}", field, s);
                }
            }
        }

        #[test]
        fn folders_are_confined(v in shaped()) {
            if let Ok(p) = rewritten(&one("LoadImageSetFromFolderNode", "folder", v.clone())) {
                let s = p["1"]["inputs"]["folder"].as_str().unwrap_or_default().to_owned();
                prop_assert!(from_upstream(NS, Kind::Input, &s).is_some() && clean(&s).as_deref() == Ok(s.as_str()), "{:?} → {:?}", v, s);
            }
        }

        #[test]
        fn rewrite_is_idempotent(prefix in shaped(), image in shaped()) {
            let mut m = one("SaveImage", "filename_prefix", prefix);
            m.extend(one("LoadImage", "image", image).into_iter().map(|(_, v)| ("2".to_owned(), v)));
            if let Ok(once) = rewritten(&m) {
                prop_assert_eq!(rewritten(&once).ok(), Some(once));
            }
        }

        #[test]
        fn strip_inverts_rewrite(
            prefix in "[a-zA-Z0-9_é-][a-zA-Z0-9_ .é%-]{0,7}(/[a-zA-Z0-9_é-][a-zA-Z0-9_ .é%-]{0,7}){0,3}",
            image in "[a-zA-Z0-9_é-][a-zA-Z0-9_ .é-]{0,7}(/[a-zA-Z0-9_é-][a-zA-Z0-9_ .é-]{0,7}){0,3}",
            ann in prop::sample::select(&["", " [input]", " [output]", " [temp]"][..]),
            model in "3d(/[a-zA-Z0-9_é-][a-zA-Z0-9_ .é-]{0,7}){1,3}",
            folder in "([a-zA-Z0-9_é-][a-zA-Z0-9_ .é-]{0,7}(/[a-zA-Z0-9_é-][a-zA-Z0-9_ .é-]{0,7}){0,2})?",
        ) {
            for v in [&prefix, &image, &model, &folder] {
                prop_assume!(!v.split('/').any(|s| s == NS));
            }
            prop_assume!(!image.ends_with(']'));
            let original = json!({
                "1": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix}},
                "2": {"class_type": "LoadImage", "inputs": {"image": format!("{image}{ann}")}},
                "3": {"class_type": "Load3D", "inputs": {"model_file": model, "image": {"image": format!("{image}{ann}"), "recording": ""}}},
                "4": {"class_type": "LoadImageSetFromFolderNode", "inputs": {"folder": folder}},
            });
            let mut p = rewritten(original.as_object().unwrap_or(&Map::new())).map_err(|r| TestCaseError::fail(r.message))?;
            strip(&mut p, NS, &NodeRules::builtin());
            prop_assert_eq!(Value::Object(p), original);
        }

        #[test]
        fn arbitrary_graphs_never_escape(graph in arb_graph()) {
            if let Ok(p) = rewritten(&graph) {
                let rules = NodeRules::builtin();
                let cat = catalog();
                for node in p.values() {
                    let class = node["class_type"].as_str().unwrap_or_default();
                    let inputs = node["inputs"].as_object().cloned().unwrap_or_default();
                    let info = cat.get(class).unwrap_or_else(|| panic!("unknown class passed: {class}"));
                    prop_assert_eq!(info.origin(), Origin::Core);
                    if info.output_node {
                        prop_assert_eq!(&inputs[OWNER_INPUT], &json!("tag"));
                    } else {
                        prop_assert!(!inputs.contains_key(OWNER_INPUT));
                    }
                    let Some(rule) = rules.get(class) else { continue };
                    for name in &rule.prefix_inputs {
                        prop_assert!(confined_prefix(inputs[name].as_str().unwrap_or_default()), "{}", inputs[name]);
                    }
                    for name in rule.file_inputs.iter().chain(&rule.model3d_inputs) {
                        if let Some(v) = inputs.get(name) {
                            prop_assert!(confined_ref(v.as_str().unwrap_or_default()), "{}", v);
                        }
                    }
                    for name in &rule.strict_name_inputs {
                        if let Some(v) = inputs.get(name) {
                            prop_assert!(strict_name(v.as_str().unwrap_or_default()), "{}", v);
                        }
                    }
                }
            }
        }
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            tricky().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool)
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(&["__value__", "image", "mask", "recording", "x"][..]),
                    inner,
                    0..3
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    fn arb_graph() -> impl Strategy<Value = Map<String, Value>> {
        let class = prop::sample::select(
            &[
                "SaveImage",
                "PreviewImage",
                "LoadImage",
                "KSampler",
                "Load3D",
                "LoadImageSetFromFolderNode",
                "LossGraphNode",
                "MySaver",
                "Nope",
            ][..],
        );
        let input = prop::sample::select(
            &[
                "filename_prefix",
                "image",
                "model_file",
                "folder",
                OWNER_INPUT,
                "seed",
            ][..],
        );
        let inputs = prop::collection::btree_map(input, arb_value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
        let node = prop_oneof![
            8 => (class, inputs).prop_map(|(c, i)| json!({"class_type": c, "inputs": i})),
            1 => arb_value(),
        ];
        prop::collection::btree_map("[0-9]{1,2}", node, 0..5).prop_map(|m| m.into_iter().collect())
    }
}
