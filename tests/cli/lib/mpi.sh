# Sourced (after check.sh's loader) by the CLI tests that run convnet under mpirun: sets Open
# MPI's environment for this machine and skips the test (exit 77, with the reason) when mpirun is
# absent, when this convnet was built without Open MPI, or when mpirun cannot start 2 ranks.
#   - loopback only: the runtime and TCP (if it is used at all) on lo; ranks meet in shared memory
#   - root allowed (containers), and more ranks than cores (--oversubscribe)
#   - no process_vm_readv for the shared-memory transport (containers often forbid it)
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIP: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"
  exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
# classify --help joins the job first (--version does not), so a build without Open MPI refuses
if ! mpirun --oversubscribe -np 2 "$CONVNET" classify --help >"$TMP/mpi_probe.out" \
  2>"$TMP/mpi_probe.err"; then
  if grep -q "without Open MPI" "$TMP/mpi_probe.err"; then
    echo "SKIP: this convnet was built without Open MPI"
  else
    echo "SKIP: mpirun -np 2 does not start:"
    sed 's/^/    /' "$TMP/mpi_probe.err" | head -n 20
  fi
  exit 77
fi
