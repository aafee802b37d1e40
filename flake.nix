{
  description = "comfy-warden: a hardened multi-user gateway in front of an unmodified ComfyUI";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        comfy-warden = pkgs.callPackage ./nix/package.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.comfy-warden;
      });

      nixosModules = {
        comfy-warden = ./nix/module.nix;
        default = self.nixosModules.comfy-warden;
      };

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.comfy-warden;
        basic = import ./nix/tests/basic.nix {
          inherit pkgs;
          module = self.nixosModules.comfy-warden;
        };
      });
    };
}
