# The demo recipe's derivation: no nixpkgs, just /bin/sh and the host's nvcc,
# so it builds on a bare machine with
#   nix-build recipes/demo --argstr sm 90 --argstr isa avx2 \
#     --option sandbox false --option substituters ''
# The CUDA source is kernels-selftest's kselftest.cu (the farm's GPU smoke
# test, so a built variant can be tested on a matching GPU) when the tree
# has it, else the small kernel.cu beside this file. sm = "cpu" builds the
# CPU-only variant from cpu.c with the host's cc (no nvcc needed).
{ sm ? "90", isa ? "avx2", name ? "demo-sm${sm}-${isa}",
  nvcc ? "/usr/local/cuda/bin/nvcc",
  kernel ? (if builtins.pathExists ../../kernels-selftest/kselftest.cu
            then ../../kernels-selftest/kselftest.cu else ./kernel.cu) }:
derivation {
  inherit name sm isa nvcc kernel;
  cpusrc = ./cpu.c;
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ ./build.sh ];
  # Host tools (gcc for nvcc's host pass); the sandbox is off on purpose.
  PATH = "/usr/local/cuda/bin:/usr/bin:/bin";
}
