# comfy-warden built from this repository, with its test suite (unit tests and the integration
# tests, which run the real daemon against an in-process ComfyUI double over loopback sockets).
{
  lib,
  rustPlatform,
}:

let
  manifest = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = manifest.package.name;
  inherit (manifest.package) version;

  # Everything Cargo.toml names (benches/ too: a declared [[bench]] whose file is missing stops
  # cargo from reading the manifest at all), and the test fixtures; not the browser test's
  # node_modules or the NixOS example.
  src = lib.fileset.toSource {
    root = ./..;
    fileset = lib.fileset.difference (lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../tests
      ../benches
      ../examples
    ]) (lib.fileset.unions [
      (lib.fileset.maybeMissing ../tests/browser/node_modules)
      ../examples/nixos
    ]);
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The integration tests bind loopback sockets and signal their child daemons; two test
  # threads keep a small builder responsive.
  __darwinAllowLocalNetworking = true;
  preCheck = ''
    export RUST_TEST_THREADS=2
  '';

  meta = {
    description = manifest.package.description;
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "comfy-warden";
    platforms = lib.platforms.linux;
  };
}
