defmodule ExESDB.ClusterDemoTest do
  # `make cluster-demo` (README, "Three nodes on one machine") as a test:
  # examples/cluster/run.sh starts three VMs of a db_type: :cluster store
  # from EX_ESDB_* variables and a driver that writes, reads across nodes,
  # stops the leader and writes again; it exits 0 only when every step
  # did what it prints. Node names and raft ports are this run's own.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 300_000

  test "the cluster demo runs from its script and passes" do
    u = ExESDB.Test.Unique.id()
    dir = Path.join(System.tmp_dir!(), "ex_esdb_cluster_demo_#{u}")
    on_exit(fn -> File.rm_rf(dir) end)

    env = [
      {"DEMO_DIR", dir},
      {"DEMO_PREFIX", "demo#{u}_"},
      {"DEMO_RAFT_PORTS", Enum.join(free_ports(3), " ")},
      # the test's own build: nothing to compile
      {"MIX_ENV", "test"}
    ]

    {out, status} = System.cmd("sh", ["examples/cluster/run.sh"], env: env, stderr_to_stdout: true)
    assert status == 0, out
    assert out =~ "cluster demo: PASS"
    assert out =~ ~r/stopping the leader .*\n.* leads now/
  end
end
