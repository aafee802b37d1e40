# NixOS module: services.comfy-warden, a hardened multi-user gateway in front of ComfyUI, and
# optionally ComfyUI itself on loopback (services.comfy-warden.comfyui).
#
# The configuration is rendered to /etc/comfy-warden (warden.toml from `settings`, RFC 42
# freeform; users.toml, roles.toml and ip-rules.toml from the typed options). Secrets never
# enter the Nix store: secretFile, tls.keyFile, users.<name>.passwordHashFile and .totpSecretFile are paths to
# files outside it, handed to the service with LoadCredential= and read through
# ${CREDENTIALS_DIRECTORY}. Changing users, roles or IP rules reloads the daemon (SIGHUP; open
# sessions and WebSockets survive), changing warden.toml restarts it. With `sockets.*`, systemd
# binds the ports (socket activation) and the service keeps no capability at all.
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
  inStore = p: lib.hasPrefix "${builtins.storeDir}/" p;
  # User and role names, as the daemon checks them (config::valid_name).
  validName = n: builtins.match "[A-Za-z0-9_@][A-Za-z0-9._@-]{0,63}" n != null;
  builtinRoles = [
    "admin"
    "power"
    "user"
    "guest"
  ];
  knownRoles = builtinRoles ++ lib.attrNames cfg.roles;

  # systemd's ExecStart= is not a shell: quote for systemd, and keep % (specifiers) and $
  # (environment variables) literal.
  systemdArgs = lib.concatMapStringsSep " " (
    a: lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON (toString a))
  );

  userEntry =
    name: u:
    lib.filterAttrs (_: v: v != null) {
      password_hash = u.passwordHash;
      password_hash_file =
        if u.passwordHashFile != null then "${credDir}/user-${name}" else null;
      totp_secret_file = if u.totpSecretFile != null then "${credDir}/totp-${name}" else null;
      roles = u.roles;
      disabled = u.disabled;
      token_version = u.tokenVersion;
      namespace = u.namespace;
    };

  usersToml = toml.generate "comfy-warden-users.toml" {
    users = lib.mapAttrs userEntry cfg.users;
  };
  rolesToml = toml.generate "comfy-warden-roles.toml" {
    roles = lib.mapAttrs (_: r: {
      inherit (r) permissions;
      require_totp = r.requireTotp;
    }) cfg.roles;
  };
  ipRulesToml = toml.generate "comfy-warden-ip-rules.toml" {
    allow = cfg.ipAllow;
    deny = cfg.ipDeny;
    unban = cfg.ipUnban;
  };
  wardenToml = toml.generate "comfy-warden.toml" cfg.settings;

  # The three kinds of listener (docs/configuration.md): each is "systemd" (a socket from
  # `sockets`) or a TCP address the daemon binds itself.
  server = cfg.settings.server;
  redirect = lib.optional (server ? http_redirect) server.http_redirect;
  metrics = lib.optional (server ? metrics_listen) server.metrics_listen;
  isSystemd = a: lib.trim a == "systemd";
  tcp = lib.filter (a: !isSystemd a);
  # An IP address and port, as the daemon takes them: "0.0.0.0:443", "[::]:443".
  addressRegex = "(([0-9.]+)|(\\[[0-9A-Fa-f:.]+(%[^]]+)?]))(:[0-9]{1,5})";
  validAddress = a: builtins.match addressRegex (lib.trim a) != null;
  # The port of such an address, or of a socket's bare port ("443"); null when there is none.
  portOf =
    a:
    let
      m = builtins.match "(.*:)?([0-9]{1,5})" (lib.trim a);
    in
    if m == null then null else lib.toInt (lib.elemAt m 1);
  isLoopback = a: lib.hasPrefix "127." (lib.trim a) || lib.hasPrefix "[::1]:" (lib.trim a);

  # What actually listens for clients (the main and redirect listeners; metrics are for a
  # scraper and stay closed): the TCP addresses the daemon binds, and the sockets systemd binds
  # for the "systemd" ones.
  # (Malformed addresses have an assertion of their own.)
  mainAddresses =
    lib.filter validAddress (tcp server.listen)
    ++ lib.optionals (lib.any isSystemd server.listen) cfg.sockets.listen;
  redirectAddresses =
    lib.filter validAddress (tcp redirect)
    ++ lib.optional (lib.any isSystemd redirect && cfg.sockets.httpRedirect != null) cfg.sockets.httpRedirect;
  publicPorts = lib.unique (
    lib.filter (p: p != null) (
      map portOf (lib.filter (a: !isLoopback a) (mainAddresses ++ redirectAddresses))
    )
  );
  # Ports below 1024 the daemon binds itself need CAP_NET_BIND_SERVICE; sockets do not.
  bindsPrivileged = lib.any (a: portOf a != null && portOf a < 1024) (
    tcp (server.listen ++ redirect ++ metrics)
  );
  hasTls = server ? tls;
  plainPublic = lib.filter (a: !isLoopback a) mainAddresses;

  # Socket activation: one socket unit per kind of listener, told apart by FileDescriptorName=.
  socketUnits = lib.filterAttrs (_: s: s.streams != [ ]) {
    comfy-warden = {
      fdName = "main";
      streams = cfg.sockets.listen;
      what = "comfy-warden";
    };
    comfy-warden-redirect = {
      fdName = "redirect";
      streams = lib.optional (cfg.sockets.httpRedirect != null) cfg.sockets.httpRedirect;
      what = "comfy-warden HTTP-to-HTTPS redirect";
    };
    comfy-warden-metrics = {
      fdName = "metrics";
      streams = lib.optional (cfg.sockets.metrics != null) cfg.sockets.metrics;
      what = "comfy-warden metrics";
    };
  };
  socketNames = map (n: "${n}.socket") (lib.attrNames socketUnits);
  socketPort = if cfg.sockets.listen == [ ] then null else portOf (builtins.head cfg.sockets.listen);
  # "systemd" in a setting <=> its socket is configured.
  socketPairs = [
    {
      setting = "settings.server.listen";
      option = "sockets.listen";
      wanted = lib.any isSystemd server.listen;
      given = cfg.sockets.listen != [ ];
    }
    {
      setting = "settings.server.http_redirect";
      option = "sockets.httpRedirect";
      wanted = lib.any isSystemd redirect;
      given = cfg.sockets.httpRedirect != null;
    }
    {
      setting = "settings.server.metrics_listen";
      option = "sockets.metrics";
      wanted = lib.any isSystemd metrics;
      given = cfg.sockets.metrics != null;
    }
  ];

  credentials =
    lib.optional (cfg.secretFile != null) "secret:${cfg.secretFile}"
    ++ lib.optional (cfg.tls.certFile != null) "tls-cert.pem:${cfg.tls.certFile}"
    ++ lib.optional (cfg.tls.keyFile != null) "tls-key.pem:${cfg.tls.keyFile}"
    ++ lib.optional (
      cfg.oidc.enable && cfg.oidc.clientSecretFile != null
    ) "oidc-secret:${cfg.oidc.clientSecretFile}"
    ++ lib.optional (cfg.oidc.enable && cfg.oidc.caFile != null) "oidc-ca.pem:${cfg.oidc.caFile}"
    ++ lib.mapAttrsToList (name: u: "user-${name}:${u.passwordHashFile}") (
      lib.filterAttrs (_: u: u.passwordHashFile != null) cfg.users
    )
    ++ lib.mapAttrsToList (name: u: "totp-${name}:${u.totpSecretFile}") (
      lib.filterAttrs (_: u: u.totpSecretFile != null) cfg.users
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
    ++ lib.optional (cfg.oidc.enable && cfg.oidc.clientSecretFile != null) {
      name = "oidc.clientSecretFile";
      value = cfg.oidc.clientSecretFile;
    }
    ++ lib.mapAttrsToList (name: u: {
      name = "users.${name}.passwordHashFile";
      value = u.passwordHashFile;
    }) (lib.filterAttrs (_: u: u.passwordHashFile != null) cfg.users)
    ++ lib.mapAttrsToList (name: u: {
      name = "users.${name}.totpSecretFile";
      value = u.totpSecretFile;
    }) (lib.filterAttrs (_: u: u.totpSecretFile != null) cfg.users);

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
                Addresses to listen on ("0.0.0.0:443", "[::]:443"), or "systemd" for the sockets
                of `sockets.listen` (the default when that is set). Anything but loopback needs
                `tls` (or `allow_plain_http = true` behind another TLS proxy).
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
            totpSecretFile = mkOption {
              type = secretPath;
              default = null;
              description = ''
                A file outside the Nix store holding the user's TOTP secret (base32, RFC 6238:
                SHA-1, 6 digits, 30 s); read through LoadCredential=. With it the user signs in
                with a code from an authenticator app after the password. Users without one
                can enrol with `comfy-warden user totp NAME` (kept in the state directory).
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
              type = types.nullOr (types.strMatching "u_[a-z0-9_-]{1,60}");
              default = null;
              description = "Overrides the user's directory name inside ComfyUI: u_ and 1-60 of a-z 0-9 _ -.";
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
          options.requireTotp = mkOption {
            type = types.bool;
            default = false;
            description = ''
              Users of this role must sign in with a second factor (TOTP); those without one
              are led through enrolment in the browser right after the password.
            '';
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

    oidc = {
      enable = lib.mkEnableOption "single sign-on through an OpenID Connect provider ([auth.oidc], docs/authentication.md)";
      issuer = mkOption {
        type = types.strMatching "https://.*";
        example = "https://id.example.com/realms/studio";
        description = "The provider's issuer URL (its discovery document lies under it).";
      };
      clientId = mkOption {
        type = types.str;
        default = "comfy-warden";
        description = "The client ID registered at the provider.";
      };
      clientSecretFile = mkOption {
        type = secretPath;
        default = null;
        description = ''
          The client secret, outside the Nix store; handed to the service with LoadCredential=.
          null: a public client (PKCE only).
        '';
      };
      userClaim = mkOption {
        type = types.str;
        default = "preferred_username";
        description = "The ID token claim that is the comfy-warden user name.";
      };
      rolesClaim = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "groups";
        description = "The ID token claim listing the person's groups.";
      };
      roleMap = mkOption {
        type = types.attrsOf types.str;
        default = { };
        example = {
          comfy-admins = "admin";
          comfy-users = "user";
        };
        description = "Provider group → comfy-warden role.";
      };
      defaultRoles = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Roles for everyone the provider signs in; [] = mapped groups or listed users only.";
      };
      displayName = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "The login button says \"Sign in with <displayName>\".";
      };
      scopes = mkOption {
        type = types.nullOr (types.listOf types.str);
        default = null;
        example = [ "profile" "groups" ];
        description = "Scopes asked for besides openid (null: [ \"profile\" ]).";
      };
      caFile = mkOption {
        type = types.nullOr (types.strMatching "/.*");
        default = null;
        description = "A PEM CA trusted besides the system's roots (for a private provider).";
      };
      endSessionRedirect = mkOption {
        type = types.bool;
        default = false;
        description = "Sign-out also signs out at the provider (its end_session_endpoint).";
      };
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
      description = ''
        Open the TCP ports of `settings.server.listen` and `http_redirect` (or of their
        `sockets`) that are not bound to loopback. The metrics listener stays closed.
      '';
    };

    sockets =
      let
        socketAddress = types.strMatching "[0-9]{1,5}|${addressRegex}";
      in
      {
        listen = mkOption {
          type = types.listOf socketAddress;
          default = [ ];
          example = [ "443" ];
          description = ''
            Socket activation: the `ListenStream=` addresses of comfy-warden.socket ("443" for
            every address, "0.0.0.0:443", "[::]:443"). systemd binds them and hands them over,
            so the service keeps no capability even for ports below 1024.
            `settings.server.listen` then defaults to `[ "systemd" ]`; like any other listener
            they need `tls` unless bound to loopback.
          '';
        };
        httpRedirect = mkOption {
          type = types.nullOr socketAddress;
          default = null;
          example = "80";
          description = ''
            The `ListenStream=` of comfy-warden-redirect.socket (`FileDescriptorName=redirect`):
            the plain listener that only redirects to https. `settings.server.http_redirect`
            then defaults to "systemd".
          '';
        };
        metrics = mkOption {
          type = types.nullOr socketAddress;
          default = null;
          example = "127.0.0.1:9464";
          description = ''
            The `ListenStream=` of comfy-warden-metrics.socket (`FileDescriptorName=metrics`):
            Prometheus metrics without authentication. `settings.server.metrics_listen` then
            defaults to "systemd".
          '';
        };
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
        assertion = plainPublic == [ ] || hasTls || (server.allow_plain_http or false);
        message = ''
          services.comfy-warden.settings.server.listen (or sockets.listen) has non-loopback
          addresses (${lib.concatStringsSep ", " plainPublic}) without TLS: set
          services.comfy-warden.tls, or settings.server.allow_plain_http = true when another
          proxy terminates TLS.
        '';
      }
    ]
    ++ lib.optional hasTls {
      assertion = server.tls ? cert && server.tls ? key;
      message = "services.comfy-warden.settings.server.tls needs cert and key: set services.comfy-warden.tls.certFile and keyFile.";
    }
    ++ map (a: {
      assertion = isSystemd a || validAddress a;
      message = ''
        services.comfy-warden.settings.server: "${a}" is not an address like 0.0.0.0:8443 or
        [::]:8443, nor "systemd".
      '';
    }) (server.listen ++ redirect ++ metrics)
    ++ map (p: {
      assertion = p.wanted == p.given;
      message =
        if p.wanted then
          ''services.comfy-warden.${p.setting} is "systemd": set services.comfy-warden.${p.option} to the address systemd should bind.''
        else
          ''services.comfy-warden.${p.option} is set, but ${p.setting} is not "systemd": the socket would not be used.'';
    }) socketPairs
    ++ lib.mapAttrsToList (name: u: {
      assertion = u.passwordHash == null || u.passwordHashFile == null;
      message = "services.comfy-warden.users.${name}: set passwordHash or passwordHashFile, not both.";
    }) cfg.users
    ++ lib.mapAttrsToList (name: _: {
      assertion = validName name;
      message = "services.comfy-warden.users.${name}: user names are 1-64 of A-Z a-z 0-9 . _ @ -, not starting with . or -.";
    }) cfg.users
    ++ lib.mapAttrsToList (name: u: {
      assertion = lib.all (r: builtins.elem r knownRoles) u.roles;
      message = ''
        services.comfy-warden.users.${name}.roles: unknown role(s)
        ${lib.concatStringsSep ", " (lib.filter (r: !builtins.elem r knownRoles) u.roles)}; known:
        ${lib.concatStringsSep ", " knownRoles} (add more with services.comfy-warden.roles).
      '';
    }) cfg.users
    ++ lib.mapAttrsToList (name: _: {
      assertion = validName name;
      message = "services.comfy-warden.roles.${name}: role names are 1-64 of A-Z a-z 0-9 . _ @ -, not starting with . or -.";
    }) cfg.roles
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
      server.listen = lib.mkIf (cfg.sockets.listen != [ ]) (lib.mkDefault [ "systemd" ]);
      server.http_redirect = lib.mkIf (cfg.sockets.httpRedirect != null) (lib.mkDefault "systemd");
      server.metrics_listen = lib.mkIf (cfg.sockets.metrics != null) (lib.mkDefault "systemd");
      # Redirects name the port of the first listen address, 443 for sockets: tell the real one.
      server.https_port = lib.mkIf (socketPort != null && socketPort != 443) (lib.mkDefault socketPort);
      files = {
        users = "${etcDir}/users.toml";
        roles = "${etcDir}/roles.toml";
        ip_rules = "${etcDir}/ip-rules.toml";
        state_dir = "/var/lib/comfy-warden";
      };
      auth.secret_file = lib.mkIf (cfg.secretFile != null) "${credDir}/secret";
      auth.oidc = lib.mkIf cfg.oidc.enable (
        {
          inherit (cfg.oidc) issuer;
          client_id = cfg.oidc.clientId;
          user_claim = cfg.oidc.userClaim;
          role_map = cfg.oidc.roleMap;
          default_roles = cfg.oidc.defaultRoles;
          end_session_redirect = cfg.oidc.endSessionRedirect;
        }
        // lib.optionalAttrs (cfg.oidc.clientSecretFile != null) {
          client_secret_file = "${credDir}/oidc-secret";
        }
        // lib.optionalAttrs (cfg.oidc.caFile != null) { ca_file = "${credDir}/oidc-ca.pem"; }
        // lib.optionalAttrs (cfg.oidc.rolesClaim != null) { roles_claim = cfg.oidc.rolesClaim; }
        // lib.optionalAttrs (cfg.oidc.displayName != null) { display_name = cfg.oidc.displayName; }
        // lib.optionalAttrs (cfg.oidc.scopes != null) { inherit (cfg.oidc) scopes; }
      );
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

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall publicPorts;

    systemd.sockets = lib.mapAttrs (_: s: {
      description = "${s.what} socket";
      wantedBy = [ "sockets.target" ];
      listenStreams = s.streams;
      socketConfig = {
        FileDescriptorName = s.fdName;
        Service = "comfy-warden.service";
        NoDelay = true;
      };
    }) socketUnits;

    systemd.services.comfy-warden = {
      description = "comfy-warden, a hardened multi-user gateway for ComfyUI";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ] ++ lib.optional cfg.comfyui.enable "comfyui.service";
      requires = socketNames;
      after = [ "network-online.target" ] ++ lib.optional cfg.comfyui.enable "comfyui.service" ++ socketNames;
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
        # Every socket's descriptors, and switch-to-configuration knows them all.
        Sockets = lib.mkIf (socketNames != [ ]) (lib.concatStringsSep " " socketNames);
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
          # Only to lower the priority of its own password-hashing threads (nice 10).
          "setpriority"
        ];
        SystemCallErrorNumber = "EPERM";
      };
    };

    systemd.services.comfyui = lib.mkIf cfg.comfyui.enable {
      description = "ComfyUI, reachable only through comfy-warden";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      # A dynamic user's home is "/", read-only here: caches (torch, Hugging Face, ...) go below.
      environment.HOME = comfyState;
      serviceConfig = {
        ExecStart = systemdArgs (
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
