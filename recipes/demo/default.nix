# The demo recipe's derivation: no nixpkgs, just /bin/sh and the host's nvcc,
# so it builds on a bare machine with
#   nix-build recipes/demo --argstr sm 90 --argstr isa avx2 \
#     --option sandbox false --option substituters ''
{ sm ? "90", isa ? "avx2", name ? "demo-sm${sm}-${isa}",
  nvcc ? "/usr/local/cuda/bin/nvcc", kernel ? ./kernel.cu }:
derivation {
  inherit name sm isa nvcc kernel;
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ ./build.sh ];
  # Host tools (gcc for nvcc's host pass); the sandbox is off on purpose.
  PATH = "/usr/local/cuda/bin:/usr/bin:/bin";
}
