# The crash test starts other BEAM nodes; this node needs a name for that.
# epmd on loopback only; one already running is used (test/support/epmd.ex).
unless Node.alive?() do
  :ok = ExESDB.Test.Epmd.ensure_started()
  {:ok, _} = Node.start(:"ex_esdb_test_#{System.pid()}", :shortnames)
end

ExUnit.start()

# Commanded's adapter test cases (test/commanded, only with COMMANDED_PATH)
# expect the 1 s assert_receive timeout that Commanded's own suite configures.
if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
  ExUnit.configure(assert_receive_timeout: 1_000)
  # their cluster runs (test/commanded/cluster_test.exs) load the test
  # modules' code on the peers
  Code.put_compiler_option(:tracers, [ExESDB.Test.ClusterBackend])
end
