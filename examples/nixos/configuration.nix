# A NixOS host running ComfyUI behind comfy-warden with TLS from Let's Encrypt.
# Import the module from the flake (inputs.comfy-warden.nixosModules.default) or directly:
#   imports = [ /path/to/comfy-warden/nix/module.nix ];
# Secrets (signing key, password hashes) live outside the Nix store, here under /run/agenix
# (agenix or sops-nix put them there); make a hash with `comfy-warden hash-password`.
{ config, pkgs, ... }:

{
  imports = [ ../../nix/module.nix ];

  security.acme = {
    acceptTerms = true;
    defaults.email = "admin@example.org";
    certs."comfy.example.org" = {
      # The key reaches comfy-warden through LoadCredential=, which is read at start.
      postRun = "systemctl try-restart comfy-warden.service";
    };
  };
  # The ACME HTTP-01 challenge needs port 80 for itself; comfy-warden redirects elsewhere.
  services.nginx = {
    enable = true;
    virtualHosts."comfy.example.org" = {
      enableACME = true;
      listen = [
        {
          addr = "0.0.0.0";
          port = 80;
        }
      ];
      locations."/".return = "301 https://$host$request_uri";
    };
  };
  networking.firewall.allowedTCPPorts = [ 80 ];

  services.comfy-warden = {
    enable = true;
    openFirewall = true;

    settings = {
      server.listen = [
        "0.0.0.0:443"
        "[::]:443"
      ];
      log.format = "json";
      log.audit_file = "audit.log";
      lockout = {
        max_failures = 5;
        ban_after = 50;
        ban_for = "24h";
      };
      server.metrics_listen = "127.0.0.1:9464";
    };

    tls = {
      certFile = "/var/lib/acme/comfy.example.org/fullchain.pem";
      keyFile = "/var/lib/acme/comfy.example.org/key.pem";
    };
    secretFile = "/run/agenix/comfy-warden-secret";

    users = {
      alice = {
        passwordHashFile = "/run/agenix/comfy-warden-alice";
        roles = [ "user" ];
      };
      bob = {
        passwordHashFile = "/run/agenix/comfy-warden-bob";
        roles = [ "power" ];
      };
      root = {
        passwordHashFile = "/run/agenix/comfy-warden-root";
        roles = [ "admin" ];
      };
    };
    roles.viewer.permissions = [ "settings" ];
    ipDeny = [ "192.0.2.0/24" ];

    comfyui = {
      enable = true;
      # A package whose main program runs ComfyUI's main.py (from an overlay or a ComfyUI
      # flake; nixpkgs has none at the time of writing).
      package = pkgs.comfyui;
      extraArgs = [ "--preview-method" "auto" ];
    };
  };

  services.prometheus.scrapeConfigs = [
    {
      job_name = "comfy-warden";
      static_configs = [ { targets = [ "127.0.0.1:9464" ]; } ];
    }
  ];
}
