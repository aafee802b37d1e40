# Evaluates nix/module.nix for real, without nixpkgs: only nixpkgs' `lib` is needed (a local
# checkout, passed as `lib`). The NixOS options the module touches are declared by a small stub
# module with types close to NixOS's own (systemd unit options merge and render like NixOS's),
# and `pkgs` is a stand-in whose `formats.toml` renders TOML in Nix, so the generated files can
# be handed to `comfy-warden check` (scripts/check-nix-eval does that).
#
#   nix-instantiate --eval --strict --json nix/tests/eval.nix --arg lib 'import /path/to/nixpkgs/lib'
#
# The result:
#   scenarios.<name>   configurations that must be accepted, each with `failedAssertions`,
#                      `warnings`, `files` (name -> text of /etc/comfy-warden/*), `units` (name ->
#                      unit file text, rendered like NixOS does), `credentials` (LoadCredential=),
#                      `firewall` and a few raw values;
#   refusals.<name>    the failed assertions of configurations that must be refused;
#   expectations.<n>   true when what the scenarios generate is as it should be;
#   python             the Python of the VM test (basic.nix), to be parsed.
# Works with Nix 2.8 (Debian's nix-bin) and needs no store writes: derivations are stand-ins.
{
  lib,
  module ? ../module.nix,
  example ? ../../examples/nixos/configuration.nix,
  vmTest ? ./basic.nix,
  flakeFile ? ../../flake.nix,
}:

let
  inherit (lib)
    concatMapStringsSep
    concatStringsSep
    filterAttrs
    mapAttrsToList
    mkOption
    types
    ;

  # ------------------------------------------------------------------ a TOML renderer
  toTOML =
    let
      bareKey = k: builtins.match "[A-Za-z0-9_-]+" k != null;
      key = k: if bareKey k then k else builtins.toJSON k;
      isTable = v: builtins.isAttrs v && !(v ? outPath);
      isTableArray = v: builtins.isList v && v != [ ] && lib.all isTable v;
      value =
        where: v:
        if v == null then
          throw "toTOML: null at ${where} (TOML has no null)"
        else if builtins.isString v then
          builtins.toJSON v
        else if builtins.isBool v then
          (if v then "true" else "false")
        else if builtins.isInt v || builtins.isFloat v then
          builtins.toJSON v
        else if builtins.isPath v || (builtins.isAttrs v && v ? outPath) then
          builtins.toJSON (toString v)
        else if builtins.isList v then
          "[" + concatMapStringsSep ", " (value where) v + "]"
        else if builtins.isAttrs v then
          "{ " + concatStringsSep ", " (mapAttrsToList (k: x: "${key k} = ${value "${where}.${k}" x}") v) + " }"
        else
          throw "toTOML: cannot render a ${builtins.typeOf v} at ${where}";
      # A table (or, with `item`, one element of an array of tables) at `path`.
      table =
        item: path: attrs:
        let
          plain = filterAttrs (_: v: !(isTable v) && !(isTableArray v)) attrs;
          where = concatStringsSep "." path;
          name = concatMapStringsSep "." key path;
          header =
            if path == [ ] then
              ""
            else if item then
              "[[${name}]]\n"
            else
              "[${name}]\n";
        in
        header
        + lib.concatStrings (mapAttrsToList (k: v: "${key k} = ${value "${where}.${k}" v}\n") plain)
        + lib.concatStrings (
          mapAttrsToList (k: v: "\n" + table false (path ++ [ k ]) v) (filterAttrs (_: isTable) attrs)
        )
        + lib.concatStrings (
          mapAttrsToList (k: vs: lib.concatMapStrings (v: "\n" + table true (path ++ [ k ]) v) vs) (
            filterAttrs (_: isTableArray) attrs
          )
        );
    in
    table false [ ];

  # ------------------------------------------------------------------ a stand-in pkgs
  # A fake derivation: enough for types.package, lib.getExe and string interpolation.
  # Its store path changes with `text` (a file's content), as a real one would.
  fakeDrv =
    name: extra:
    let
      hash = builtins.substring 0 32 (builtins.hashString "sha256" (extra.text or name));
    in
    {
      type = "derivation";
      inherit name;
      outPath = "${builtins.storeDir}/${hash}-${name}";
      drvPath = "${builtins.storeDir}/${hash}-${name}.drv";
      meta = { };
    }
    // extra;

  tomlValue =
    let
      valueType =
        types.nullOr (
          types.oneOf [
            types.bool
            types.int
            types.float
            types.str
            types.path
            (types.attrsOf valueType)
            (types.listOf valueType)
          ]
        )
        // {
          description = "TOML value";
        };
    in
    # nixpkgs' formats.toml refuses null (lib.types.toml); older lib lacks that type.
    lib.types.toml or valueType;

  pkgs = {
    inherit lib;
    formats.toml =
      { }:
      {
        type = tomlValue;
        generate = name: value: fakeDrv name { text = toTOML value; };
      };
    writeText = name: text: fakeDrv name { inherit text; };
    writeShellScript = name: text: fakeDrv name { text = "#!/bin/sh\n" + text; };
    coreutils = fakeDrv "coreutils-9.5" { meta.mainProgram = "coreutils"; };
    python3 = fakeDrv "python3-3.12" { meta.mainProgram = "python3"; };
    # package.nix through callPackage with a fake rustPlatform: checks that it evaluates
    # (importTOML, meta) without building anything.
    callPackage =
      f: args:
      let
        fn = if builtins.isFunction f then f else import f;
      in
      fn (
        {
          inherit lib;
          rustPlatform.buildRustPackage =
            a:
            assert builtins.pathExists a.cargoLock.lockFile;
            fakeDrv "${a.pname}-${a.version}" { inherit (a) meta; };
        }
        // args
      );
    comfyui = fakeDrv "comfyui-0.3" { meta.mainProgram = "comfyui"; };
    testers.runNixOSTest = t: t;
  };

  # ------------------------------------------------------------------ NixOS option stubs
  # systemd options merge like NixOS's `unitOption`: lists concatenate, scalars must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if builtins.isList (builtins.head defs').value then
        lib.concatMap (
          d:
          if builtins.isList d.value then
            d.value
          else
            throw "${lib.showOption loc}: a mix of list and non-list definitions"
        ) defs'
      else
        lib.mergeEqualOption loc defs';
  };
  unitNames = types.listOf (types.strMatching "[^/]+\\.(service|socket|target|timer|path|mount)");
  unitCommon = {
    description = mkOption {
      type = types.singleLineStr;
      default = "";
    };
    documentation = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    wantedBy = mkOption {
      type = unitNames;
      default = [ ];
    };
    requiredBy = mkOption {
      type = unitNames;
      default = [ ];
    };
    wants = mkOption {
      type = unitNames;
      default = [ ];
    };
    requires = mkOption {
      type = unitNames;
      default = [ ];
    };
    after = mkOption {
      type = unitNames;
      default = [ ];
    };
    before = mkOption {
      type = unitNames;
      default = [ ];
    };
    bindsTo = mkOption {
      type = unitNames;
      default = [ ];
    };
    partOf = mkOption {
      type = unitNames;
      default = [ ];
    };
    unitConfig = mkOption {
      type = types.attrsOf unitOption;
      default = { };
    };
    restartTriggers = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    reloadTriggers = mkOption {
      type = types.listOf unitOption;
      default = [ ];
    };
  };
  serviceTypes = [
    "exec"
    "simple"
    "forking"
    "oneshot"
    "dbus"
    "notify"
    "notify-reload"
    "idle"
  ];
  serviceModule = {
    options = unitCommon // {
      environment = mkOption {
        type = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.str
              types.path
              types.package
            ]
          )
        );
        default = { };
      };
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      serviceConfig = mkOption {
        type = types.addCheck (types.attrsOf unitOption) (
          c: !(c ? Type) || builtins.elem c.Type serviceTypes
        );
        default = { };
      };
      script = mkOption {
        type = types.lines;
        default = "";
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      reloadIfChanged = mkOption {
        type = types.bool;
        default = false;
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      startLimitBurst = mkOption { type = types.int; };
      startLimitIntervalSec = mkOption { type = types.int; };
    };
  };
  socketModule = {
    options = unitCommon // {
      listenStreams = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      socketConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
    };
  };
  anything = mkOption {
    type = types.attrsOf types.anything;
    default = { };
  };

  stubs =
    { config, ... }:
    {
      options = {
        assertions = mkOption {
          type = types.listOf (
            types.submodule {
              options.assertion = mkOption { type = types.bool; };
              options.message = mkOption { type = types.str; };
            }
          );
          default = [ ];
        };
        warnings = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        environment.etc = mkOption {
          type = types.attrsOf (
            types.submodule {
              options = {
                source = mkOption { type = types.path; };
                text = mkOption {
                  type = types.nullOr types.lines;
                  default = null;
                };
                mode = mkOption {
                  type = types.str;
                  default = "symlink";
                };
              };
            }
          );
          default = { };
        };
        networking.firewall.allowedTCPPorts = mkOption {
          type = types.listOf types.port;
          default = [ ];
        };
        systemd.services = mkOption {
          type = types.attrsOf (types.submodule serviceModule);
          default = { };
        };
        systemd.sockets = mkOption {
          type = types.attrsOf (types.submodule socketModule);
          default = { };
        };
        systemd.tmpfiles.settings = anything;
        users.users = anything;
        users.groups = anything;
        # What examples/nixos and the VM test set besides the module.
        security.acme = anything;
        services.nginx = anything;
        services.prometheus = anything;
        specialisation = anything;
      };
      config._module.args.pkgs = pkgs;
    };

  # ------------------------------------------------------------------ rendering, like NixOS
  render =
    v:
    if v == true then
      "true"
    else if v == false then
      "false"
    else
      toString v;
  section =
    name: attrs:
    "[${name}]\n"
    + lib.concatStrings (
      mapAttrsToList (
        k: v: lib.concatMapStrings (x: "${k}=${render x}\n") (if builtins.isList v then v else [ v ])
      ) attrs
    );
  hashOf = x: builtins.hashString "sha256" (builtins.toJSON x);
  serviceUnit =
    s:
    section "Unit" (
      filterAttrs (_: v: v != [ ] && v != "") {
        Description = s.description;
        Wants = concatStringsSep " " s.wants;
        Requires = concatStringsSep " " s.requires;
        After = concatStringsSep " " s.after;
        Before = concatStringsSep " " s.before;
        BindsTo = concatStringsSep " " s.bindsTo;
        PartOf = concatStringsSep " " s.partOf;
        X-Restart-Triggers = map (t: if t ? outPath then t.outPath else hashOf t) s.restartTriggers;
        X-Reload-Triggers = map (t: if t ? outPath then t.outPath else hashOf t) s.reloadTriggers;
      }
      // s.unitConfig
    )
    + "\n"
    + section "Service" (
      {
        Environment = mapAttrsToList (k: v: "\"${k}=${toString v}\"") (filterAttrs (_: v: v != null) s.environment);
      }
      // s.serviceConfig
    );
  socketUnit =
    s:
    section "Unit" (filterAttrs (_: v: v != "") { Description = s.description; } // s.unitConfig)
    + "\n"
    + section "Socket" ({ ListenStream = s.listenStreams; } // s.socketConfig);

  evaluate =
    modules:
    let
      ev = lib.evalModules { modules = [ stubs ] ++ modules; };
      c = ev.config;
      cw = c.services.comfy-warden;
      svc = c.systemd.services.comfy-warden or null;
      etc = filterAttrs (n: _: lib.hasPrefix "comfy-warden/" n) c.environment.etc;
    in
    {
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
      warnings = c.warnings;
      files = lib.mapAttrs' (n: v: lib.nameValuePair (lib.removePrefix "comfy-warden/" n) v.source.text) etc;
      units =
        lib.mapAttrs' (n: s: lib.nameValuePair "${n}.service" (serviceUnit s)) (
          filterAttrs (n: _: builtins.elem n [ "comfy-warden" "comfyui" ]) c.systemd.services
        )
        // lib.mapAttrs' (n: s: lib.nameValuePair "${n}.socket" (socketUnit s)) (
          filterAttrs (n: _: lib.hasPrefix "comfy-warden" n) c.systemd.sockets
        );
      credentials = if svc == null then [ ] else svc.serviceConfig.LoadCredential or [ ];
      execStart = if svc == null then null else svc.serviceConfig.ExecStart;
      reloadTriggers = if svc == null then [ ] else map toString svc.reloadTriggers;
      restartTriggers = if svc == null then [ ] else map toString svc.restartTriggers;
      firewall = c.networking.firewall.allowedTCPPorts;
      package = if cw.enable then cw.package.name else null;
    };

  # Evaluates to the failed assertions only (for configurations that must be refused).
  refused = modules: (evaluate modules).failedAssertions;

  phc = "$argon2id$v=19$m=19456,t=2,p=1$wucOsDFzvEOT/SQ4cVG8Pg$pQ0PGAn3QOYnA3dlmHDbkBKq6D4z2Mfe/YclY+ouVo0";

  cfg = c: {
    imports = [ module ];
    services.comfy-warden = {
      enable = true;
    }
    // c;
  };

  vmTestDef = import vmTest { inherit pkgs module; };
  vm = vmTestDef.nodes.machine;

  flake =
    let
      self = (import flakeFile).outputs {
        inherit self;
        nixpkgs = {
          inherit lib;
          legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
            system: pkgs // { stdenv.hostPlatform.system = system; }
          );
        };
      };
    in
    self;

  s = scenarios;
  warden = n: s.${n}.files."warden.toml";
  has = n: needle: lib.hasInfix needle (warden n);
  unit = n: u: s.${n}.units.${u};

  scenarios = {
    disabled = evaluate [
      module
      { services.comfy-warden.enable = false; }
    ];

    minimal = evaluate [ (cfg { settings.upstream.url = "http://127.0.0.1:8188"; }) ];

    users = evaluate [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        users = {
          alice.passwordHashFile = "/run/keys/alice.phc";
          bob = {
            passwordHash = phc;
            roles = [
              "power"
              "viewer"
            ];
            tokenVersion = 3;
          };
          "carol@example.org" = {
            passwordHashFile = "/run/keys/carol.phc";
            totpSecretFile = "/run/keys/carol.totp";
            namespace = "u_carol";
            disabled = true;
          };
          sso-only.roles = [ "guest" ];
        };
        roles.viewer.permissions = [ "settings" ];
        roles.viewer.requireTotp = true;
      })
    ];

    oidc = evaluate [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        oidc = {
          enable = true;
          issuer = "https://id.example.com/realms/studio";
          clientSecretFile = "/run/agenix/oidc-secret";
          rolesClaim = "groups";
          roleMap = {
            comfy-admins = "admin";
            comfy-users = "user";
          };
          displayName = "Studio login";
        };
      })
    ];

    tls = evaluate [
      (cfg {
        openFirewall = true;
        settings = {
          upstream.url = "http://127.0.0.1:8188";
          server.listen = [
            "0.0.0.0:443"
            "[::]:443"
          ];
          server.http_redirect = "0.0.0.0:80";
          server.metrics_listen = "127.0.0.1:9464";
          server.tls.hsts = "max-age=63072000";
          log.audit_file = "audit.log";
          lockout.ban_after = 50;
        };
        tls.certFile = "/var/lib/acme/example/fullchain.pem";
        tls.keyFile = "/var/lib/acme/example/key.pem";
        secretFile = "/run/agenix/comfy-warden-secret";
      })
    ];

    iprules = evaluate [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        settings.server.listen = [ "10.0.0.5:8080" ];
        settings.server.allow_plain_http = true;
        settings.server.trusted_proxies = [ "10.0.0.2" ];
        openFirewall = true;
        ipAllow = [
          "10.0.0.0/8"
          "2001:db8::/32"
        ];
        ipDeny = [ "10.66.0.0/16" ];
        ipUnban = [ "10.0.0.2" ];
      })
    ];

    # openFirewall with only loopback listeners must open nothing.
    loopbackFirewall = evaluate [
      (cfg {
        openFirewall = true;
        settings.upstream.url = "http://127.0.0.1:8188";
        settings.server.metrics_listen = "127.0.0.1:9464";
      })
    ];

    comfyui = evaluate [
      (cfg {
        comfyui = {
          enable = true;
          package = pkgs.comfyui;
          port = 8190;
          extraArgs = [
            "--preview-method"
            "auto"
            "--extra-model-paths-config"
            "/srv/models dir/100%.yaml"
            "--front-end-version"
            "$HOME"
          ];
        };
      })
    ];

    # Socket activation on another port: redirects must name it.
    socketsPlain = evaluate [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        sockets.listen = [ "127.0.0.1:8443" ];
        sockets.httpRedirect = "127.0.0.1:8081";
      })
    ];

    # Socket activation: systemd binds 443 and 80, the service keeps no capability.
    sockets = evaluate [
      (cfg {
        openFirewall = true;
        settings.upstream.url = "http://127.0.0.1:8188";
        sockets = {
          listen = [ "443" ];
          httpRedirect = "80";
          metrics = "127.0.0.1:9464";
        };
        tls.certFile = "/var/lib/acme/example/fullchain.pem";
        tls.keyFile = "/var/lib/acme/example/key.pem";
      })
    ];

    example = evaluate [ example ];

    vmTest = evaluate [ vm ];
    vmTestSpecialisation = evaluate [
      vm
      (vm { inherit pkgs; }).specialisation.bob-disabled.configuration
    ];
  };

  # Each must trip an assertion (the value is the list of failed assertions' messages).
  refusals = {
    tlsHalf = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        tls.certFile = "/etc/ssl/cert.pem";
      })
    ];
    plainPublic = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        settings.server.listen = [ "0.0.0.0:8080" ];
      })
    ];
    bothHashes = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        users.alice = {
          passwordHash = phc;
          passwordHashFile = "/run/keys/alice.phc";
        };
      })
    ];
    badName = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        users.".hidden".passwordHash = phc;
      })
    ];
    socketMissing = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        settings.server.listen = [ "systemd" ];
      })
    ];
    socketUnused = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        settings.server.listen = [ "127.0.0.1:8080" ];
        sockets.listen = [ "127.0.0.1:8443" ];
      })
    ];
    socketPlainPublic = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        sockets.listen = [ "443" ];
      })
    ];
    badAddress = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        settings.server.listen = [ "localhost:8080" ];
      })
    ];
    unknownRole = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        users.alice = {
          passwordHash = phc;
          roles = [ "viewer" ];
        };
      })
    ];
    badRoleName = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        roles."-x".permissions = [ "run" ];
      })
    ];
    tlsWithoutFiles = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        settings.server.tls.hsts = "max-age=600";
      })
    ];
    secretInStore = refused [
      (cfg {
        settings.upstream.url = "http://127.0.0.1:8188";
        secretFile = "${builtins.storeDir}/aaaa-secret";
      })
    ];
  };

  expectations = {
    disabledGeneratesNothing = s.disabled.units == { } && s.disabled.files == { };
    minimalListensOnLoopback = has "minimal" ''listen = ["127.0.0.1:8080"]'';
    minimalNeedsNoCredential = s.minimal.credentials == [ ];
    everyScenarioPassesItsAssertions = lib.all (n: s.${n}.failedAssertions == [ ]) (builtins.attrNames s);
    usersHashFilesAreCredentials =
      builtins.elem "user-alice:/run/keys/alice.phc" s.users.credentials
      && lib.hasInfix ''password_hash_file = "''${CREDENTIALS_DIRECTORY}/user-alice"'' s.users.files."users.toml";
    oidcSecretIsACredential =
      builtins.elem "oidc-secret:/run/agenix/oidc-secret" s.oidc.credentials
      && has "oidc" ''client_secret_file = "''${CREDENTIALS_DIRECTORY}/oidc-secret"''
      && has "oidc" ''issuer = "https://id.example.com/realms/studio"''
      && has "oidc" ''roles_claim = "groups"'';
    totpSecretThroughCredentials =
      builtins.elem "totp-carol@example.org:/run/keys/carol.totp" s.users.credentials
      && lib.hasInfix ''totp_secret_file = "''${CREDENTIALS_DIRECTORY}/totp-carol@example.org"'' s.users.files."users.toml"
      && lib.hasInfix "require_totp = true" s.users.files."roles.toml";
    tlsKeysAreCredentials =
      builtins.elem "tls-key.pem:/var/lib/acme/example/key.pem" s.tls.credentials
      && has "tls" ''key = "''${CREDENTIALS_DIRECTORY}/tls-key.pem"'';
    tlsUserHstsKept = has "tls" ''hsts = "max-age=63072000"'';
    firewallOpensPublicPortsOnce = s.tls.firewall == [ 443 80 ];
    firewallIgnoresLoopback = s.loopbackFirewall.firewall == [ ];
    firewallPlainPublic = s.iprules.firewall == [ 8080 ];
    comfyuiUpstream = has "comfyui" ''url = "http://127.0.0.1:8190"'';
    comfyuiArgsEscaped = lib.hasInfix ''"/srv/models dir/100%%.yaml" "--front-end-version" "$$HOME"'' (
      unit "comfyui" "comfyui.service"
    );
    comfyuiOrdered = lib.hasInfix "After=network-online.target comfyui.service" (unit "comfyui" "comfy-warden.service");
    reloadOnUsersRestartOnSettings =
      s.users.reloadTriggers != [ ] && s.users.restartTriggers != [ ]
      && lib.hasInfix "users.toml" (builtins.head s.users.reloadTriggers);
    socketUnits =
      builtins.attrNames s.sockets.units == [
        "comfy-warden-metrics.socket"
        "comfy-warden-redirect.socket"
        "comfy-warden.service"
        "comfy-warden.socket"
      ];
    socketSettings =
      has "sockets" ''http_redirect = "systemd"''
      && has "sockets" ''listen = ["systemd"]''
      && has "sockets" ''metrics_listen = "systemd"'';
    socketNamesAndOrder =
      lib.hasInfix "FileDescriptorName=redirect" (unit "sockets" "comfy-warden-redirect.socket")
      && lib.hasInfix "Requires=comfy-warden.socket comfy-warden-metrics.socket comfy-warden-redirect.socket" (
        unit "sockets" "comfy-warden.service"
      )
      && lib.hasInfix "\nSockets=comfy-warden.socket comfy-warden-metrics.socket comfy-warden-redirect.socket\n" (
        unit "sockets" "comfy-warden.service"
      );
    socketNoCapability =
      lib.hasInfix "\nCapabilityBoundingSet=\n" (unit "sockets" "comfy-warden.service")
      && lib.hasInfix "\nPrivateUsers=true\n" (unit "sockets" "comfy-warden.service");
    socketFirewall = s.sockets.firewall == [ 443 80 ];
    socketHttpsPort = has "socketsPlain" "https_port = 8443" && !(has "sockets" "https_port");
    privilegedPortKeepsOnlyBindCapability =
      lib.hasInfix "\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" (unit "tls" "comfy-warden.service")
      && lib.hasInfix "\nPrivateUsers=false\n" (unit "tls" "comfy-warden.service");
    comfyuiHome = lib.hasInfix ''Environment="HOME=/var/lib/comfyui"'' (unit "comfyui" "comfyui.service");
    # Only the reload triggers differ between the VM test and its specialisation (so switching
    # reloads, keeping the pid, as the test asserts).
    vmTestSwitchOnlyReloads =
      let
        strip = t: lib.filter (l: !lib.hasPrefix "X-Reload-Triggers=" l) (lib.splitString "\n" t);
      in
      strip (unit "vmTest" "comfy-warden.service") == strip (unit "vmTestSpecialisation" "comfy-warden.service")
      && s.vmTest.reloadTriggers != s.vmTestSpecialisation.reloadTriggers;
    badNamespaceIsATypeError =
      !(builtins.tryEval (
        builtins.deepSeq (evaluate [
          (cfg {
            settings.upstream.url = "http://127.0.0.1:8188";
            users.alice.namespace = "../alice";
          })
        ]).files true
      )).success;
    socketHostnameIsATypeError =
      !(builtins.tryEval (
        builtins.deepSeq (evaluate [
          (cfg {
            settings.upstream.url = "http://127.0.0.1:8188";
            sockets.listen = [ "localhost:443" ];
          })
        ]).units true
      )).success;
    missingUpstreamFails =
      !(builtins.tryEval (builtins.deepSeq (evaluate [ (cfg { }) ]).files true)).success;
    flakeOutputs =
      flake.nixosModules.default == module
      && flake.packages.x86_64-linux.default.name == "comfy-warden-0.1.0"
      && flake.packages.aarch64-linux.comfy-warden.meta.mainProgram == "comfy-warden"
      && flake.checks.x86_64-linux.basic.name == "comfy-warden-basic";
    vmTestSpecialisationDisablesBob = lib.hasInfix "disabled = true" s.vmTestSpecialisation.files."users.toml";
  };
in
{
  inherit scenarios refusals expectations;
  # The VM test's Python (the driver's test script and the ComfyUI stand-in), to be parsed.
  python = {
    testScript = vmTestDef.testScript {
      nodes.machine.system.build.toplevel = "${builtins.storeDir}/00000000000000000000000000000000-toplevel";
    };
    # With a writeText that returns the text itself, ExecStart = "<python3> <the script>".
    standin =
      let
        node = (import vmTest {
          pkgs = pkgs // { writeText = _: text: text; };
          inherit module;
        }).nodes.machine { inherit pkgs; };
      in
      lib.removePrefix "${pkgs.python3}/bin/python3 " node.systemd.services.comfy-standin.serviceConfig.ExecStart;
  };
}
