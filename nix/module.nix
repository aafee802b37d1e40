# NixOS module: services.comfy-warden, a hardened multi-user gateway in front of ComfyUI, and
# optionally ComfyUI itself on loopback (services.comfy-warden.comfyui).
#
# The configuration is rendered to /etc/comfy-warden (warden.toml from `settings`, RFC 42
# freeform; users.toml, roles.toml and ip-rules.toml from the typed options). Secrets never
# enter the Nix store: secretFile, tls.keyFile and users.<name>.passwordHashFile are paths to
# files outside it, handed to the service with LoadCredential= and read through
# ${CREDENTIALS_DIRECTORY}. Changing users, roles or IP rules reloads the daemon (SIGHUP; open
# sessions and WebSockets survive), changing warden.toml restarts it.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption types;
  cfg = config.services.comfy-warden;
  toml = pkgs.formats.toml { };
  credDir = "\${CREDENTIALS_DIRECTORY}";
  etcDir = "/etc/comfy-warden";

  permissions = [
    "run"
    "upload"
    "view_all"
    "interrupt_any"
    "free_memory"
    "manager"
    "api_tokens"
    "settings"
    "admin"
  ];

  # A path to a secret: absolute, and (checked in the assertions) outside the Nix store.
  secretPath = types.nullOr (types.strMatching "/.*");
  inStore = p: lib.hasPrefix builtins.storeDir p;
  validName = n: builtins.match "[A-Za-z0-9_@][A-Za-z0-9._@-]{0,63}" n != null;

  userEntry =
    name: u:
    lib.filterAttrs (_: v: v != null) {
      password_hash = u.passwordHash;
      password_hash_file =
        if u.passwordHashFile != null then "${credDir}/user-${name}" else null;
      roles = u.roles;
      disabled = u.disabled;
      token_version = u.tokenVersion;
      namespace = u.namespace;
    };

  usersToml = toml.generate "comfy-warden-users.toml" {
    users = lib.mapAttrs userEntry cfg.users;
  };
  rolesToml = toml.generate "comfy-warden-roles.toml" {
    roles = lib.mapAttrs (_: r: { inherit (r) permissions; }) cfg.roles;
  };
  ipRulesToml = toml.generate "comfy-warden-ip-rules.toml" {
    allow = cfg.ipAllow;
    deny = cfg.ipDeny;
    unban = cfg.ipUnban;
  };
  wardenToml = toml.generate "comfy-warden.toml" cfg.settings;

  listens = lib.filter (a: a != "systemd") (
    cfg.settings.server.listen ++ lib.optional (cfg.settings.server ? http_redirect) cfg.settings.server.http_redirect
  );
  portOf = a: lib.toInt (lib.last (lib.splitString ":" a));
  ports = map portOf listens;
  bindsPrivileged = lib.any (p: p < 1024) ports;
  isLoopback = a: lib.hasPrefix "127." a || lib.hasPrefix "[::1]:" a || a == "systemd";
  plainPublic = lib.filter (a: !isLoopback a) cfg.settings.server.listen;

  credentials =
    lib.optional (cfg.secretFile != null) "secret:${cfg.secretFile}"
    ++ lib.optionals (cfg.tls.certFile != null) [
      "tls-cert.pem:${cfg.tls.certFile}"
      "tls-key.pem:${cfg.tls.keyFile}"
    ]
    ++ lib.mapAttrsToList (name: u: "user-${name}:${u.passwordHashFile}") (
      lib.filterAttrs (_: u: u.passwordHashFile != null) cfg.users
    );

  secretPaths =
    lib.optional (cfg.secretFile != null) {
      name = "secretFile";
      value = cfg.secretFile;
    }
    ++ lib.optional (cfg.tls.keyFile != null) {
      name = "tls.keyFile";
      value = cfg.tls.keyFile;
    }
    ++ lib.mapAttrsToList (name: u: {
      name = "users.${name}.passwordHashFile";
      value = u.passwordHashFile;
    }) (lib.filterAttrs (_: u: u.passwordHashFile != null) cfg.users);

  comfyState = "/var/lib/comfyui";

  freeform =
    options:
    mkOption {
      type = types.submodule {
        freeformType = toml.type;
        inherit options;
      };
      default = { };
      description = "See docs/configuration.md for every key.";
    };
in
{
  options.services.comfy-warden = {
    enable = lib.mkEnableOption "comfy-warden, a hardened multi-user gateway in front of ComfyUI";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The comfy-warden package.";
    };

    settings = mkOption {
      description = ''
        warden.toml (docs/configuration.md), as Nix values. `files` is set by this module;
        `auth.secret_file` and `server.tls` follow `secretFile` and `tls`.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          server.listen = [ "0.0.0.0:443" ];
          server.http_redirect = "0.0.0.0:80";
          upstream.url = "http://127.0.0.1:8188";
          lockout.ban_after = 50;
        }
      '';
      type = types.submodule {
        freeformType = toml.type;
        options = {
          server = freeform {
            listen = mkOption {
              type = types.listOf types.str;
              default = [ "127.0.0.1:8080" ];
              description = ''
                Addresses to listen on ("0.0.0.0:443", "[::]:443"), or "systemd". Anything but
                loopback needs `tls` (or `allow_plain_http = true` behind another TLS proxy).
              '';
            };
          };
          upstream = freeform {
            url = mkOption {
              type = types.str;
              description = "ComfyUI's address, http://HOST:PORT (set for you by `comfyui.enable`).";
            };
          };
          files = freeform { };
          auth = freeform { };
          log = freeform { };
        };
      };
    };

    users = mkOption {
      default = { };
      description = "The people who may sign in (users.toml).";
      example = lib.literalExpression ''
        {
          alice = { passwordHashFile = "/run/agenix/alice.phc"; roles = [ "user" ]; };
          root = { passwordHashFile = "/run/agenix/root.phc"; roles = [ "admin" ]; };
        }
      '';
      type = types.attrsOf (
        types.submodule {
          options = {
            passwordHashFile = mkOption {
              type = secretPath;
              default = null;
              description = ''
                A file outside the Nix store holding the user's argon2id PHC string
                (`comfy-warden hash-password`); read through LoadCredential=, so changing its
                content takes effect at the next restart.
              '';
            };
            passwordHash = mkOption {
              type = types.nullOr types.str;
              default = null;
              description = ''
                The argon2id PHC string itself. It lands in the world-readable Nix store:
                prefer `passwordHashFile`.
              '';
            };
            roles = mkOption {
              type = types.listOf types.str;
              default = [ "user" ];
              description = "Roles (built in: admin, power, user, guest; or from `roles`).";
            };
            disabled = mkOption {
              type = types.bool;
              default = false;
              description = "A disabled user cannot sign in; open sessions end at once.";
            };
            tokenVersion = mkOption {
              type = types.ints.positive;
              default = 1;
              description = "Bump to revoke every session and token of this user.";
            };
            namespace = mkOption {
              type = types.nullOr types.str;
              default = null;
              description = "Overrides the user's directory name inside ComfyUI (u_...).";
            };
          };
        }
      );
    };

    roles = mkOption {
      default = { };
      description = "Extra roles, or replacements of built-in ones (roles.toml).";
      example = lib.literalExpression ''{ viewer.permissions = [ "settings" ]; }'';
      type = types.attrsOf (
        types.submodule {
          options.permissions = mkOption {
            type = types.listOf (types.enum permissions);
            description = "Permissions granted by the role.";
          };
        }
      );
    };

    ipAllow = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "10.0.0.0/8" ];
      description = "When non-empty, only these addresses or networks may connect.";
    };
    ipDeny = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Addresses or networks always refused (deny wins over allow).";
    };
    ipUnban = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Addresses or networks the lockout never bans.";
    };

    secretFile = mkOption {
      type = secretPath;
      default = null;
      description = ''
        The HMAC key that signs sessions (>= 32 bytes), outside the Nix store. When null, one is
        generated into the state directory on first start.
      '';
    };

    tls = {
      certFile = mkOption {
        type = secretPath;
        default = null;
        description = "PEM certificate chain (leaf first).";
      };
      keyFile = mkOption {
        type = secretPath;
        default = null;
        description = ''
          PEM private key, outside the Nix store. Both files are handed over with
          LoadCredential=, so a renewed certificate takes effect at the next restart (e.g.
          `security.acme.certs.<name>.postRun = "systemctl try-restart comfy-warden.service"`).
        '';
      };
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the TCP ports of `settings.server.listen` and `http_redirect`.";
    };

    comfyui = {
      enable = lib.mkEnableOption "ComfyUI on 127.0.0.1, reachable only through comfy-warden";
      package = mkOption {
        type = types.package;
        description = "A ComfyUI package whose main program accepts ComfyUI's command line.";
      };
      port = mkOption {
        type = types.port;
        default = 8188;
        description = "ComfyUI's port on 127.0.0.1.";
      };
      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "--cpu" ];
        description = "More ComfyUI arguments.";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = (cfg.tls.certFile == null) == (cfg.tls.keyFile == null);
        message = "services.comfy-warden.tls: set both certFile and keyFile, or neither.";
      }
      {
        assertion =
          plainPublic == [ ] || cfg.tls.certFile != null || (cfg.settings.server.allow_plain_http or false);
        message = ''
          services.comfy-warden.settings.server.listen has non-loopback addresses
          (${lib.concatStringsSep ", " plainPublic}) without TLS: set services.comfy-warden.tls,
          or settings.server.allow_plain_http = true when another proxy terminates TLS.
        '';
      }
    ]
    ++ lib.mapAttrsToList (name: u: {
      assertion = u.passwordHash == null || u.passwordHashFile == null;
      message = "services.comfy-warden.users.${name}: set passwordHash or passwordHashFile, not both.";
    }) cfg.users
    ++ lib.mapAttrsToList (name: _: {
      assertion = validName name;
      message = "services.comfy-warden.users.${name}: user names are 1-64 of A-Z a-z 0-9 . _ @ -, not starting with . or -.";
    }) cfg.users
    ++ map (p: {
      assertion = !inStore p.value;
      message = ''
        services.comfy-warden.${p.name} = ${p.value} is in the Nix store, which every local user
        can read: keep secrets outside it (for example with agenix or sops-nix).
      '';
    }) secretPaths;

    services.comfy-warden.settings = {
      upstream.url = lib.mkIf cfg.comfyui.enable (
        lib.mkDefault "http://127.0.0.1:${toString cfg.comfyui.port}"
      );
      files = {
        users = "${etcDir}/users.toml";
        roles = "${etcDir}/roles.toml";
        ip_rules = "${etcDir}/ip-rules.toml";
        state_dir = "/var/lib/comfy-warden";
      };
      auth.secret_file = lib.mkIf (cfg.secretFile != null) "${credDir}/secret";
      server.tls = lib.mkIf (cfg.tls.certFile != null) {
        cert = "${credDir}/tls-cert.pem";
        key = "${credDir}/tls-key.pem";
      };
    };

    environment.etc = {
      "comfy-warden/warden.toml".source = wardenToml;
      "comfy-warden/users.toml".source = usersToml;
      "comfy-warden/roles.toml".source = rolesToml;
      "comfy-warden/ip-rules.toml".source = ipRulesToml;
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall ports;

    systemd.services.comfy-warden = {
      description = "comfy-warden, a hardened multi-user gateway for ComfyUI";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ] ++ lib.optional cfg.comfyui.enable "comfyui.service";
      after = [ "network-online.target" ] ++ lib.optional cfg.comfyui.enable "comfyui.service";
      # Users, roles and IP rules reload in place; warden.toml may change listeners: restart.
      reloadTriggers = [
        usersToml
        rolesToml
        ipRulesToml
      ];
      restartTriggers = [ wardenToml ];
      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${lib.getExe cfg.package} serve --config ${etcDir}";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        RestartSec = "2s";
        TimeoutStopSec = "40s";
        WatchdogSec = "30s";

        DynamicUser = true;
        StateDirectory = "comfy-warden";
        StateDirectoryMode = "0700";
        LoadCredential = credentials;
        UMask = "0077";

        CapabilityBoundingSet = if bindsPrivileged then [ "CAP_NET_BIND_SERVICE" ] else [ "" ];
        AmbientCapabilities = if bindsPrivileged then [ "CAP_NET_BIND_SERVICE" ] else [ "" ];
        PrivateUsers = !bindsPrivileged;
        NoNewPrivileges = true;

        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        PrivateIPC = true;
        PrivateMounts = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        ProtectClock = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        KeyringMode = "private";
        RemoveIPC = true;

        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged @resources"
        ];
        SystemCallErrorNumber = "EPERM";
      };
    };

    systemd.services.comfyui = lib.mkIf cfg.comfyui.enable {
      description = "ComfyUI, reachable only through comfy-warden";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      serviceConfig = {
        ExecStart = lib.escapeShellArgs (
          [
            (lib.getExe cfg.comfyui.package)
            "--listen"
            "127.0.0.1"
            "--port"
            (toString cfg.comfyui.port)
            "--multi-user"
            "--disable-api-nodes"
            "--input-directory"
            "${comfyState}/input"
            "--output-directory"
            "${comfyState}/output"
            # ComfyUI puts its temp files into <this>/temp.
            "--temp-directory"
            comfyState
            "--user-directory"
            "${comfyState}/user"
          ]
          ++ cfg.comfyui.extraArgs
        );
        WorkingDirectory = comfyState;
        DynamicUser = true;
        StateDirectory = [
          "comfyui"
          "comfyui/input"
          "comfyui/output"
          "comfyui/temp"
          "comfyui/user"
        ];
        StateDirectoryMode = "0700";
        Restart = "on-failure";
        UMask = "0077";
        # No MemoryDenyWriteExecute or PrivateDevices: Python JITs and GPUs need them off.
        CapabilityBoundingSet = [ "" ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        ProtectClock = true;
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
      };
    };
  };
}
