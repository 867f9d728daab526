defmodule ExESDB.CNodeClaimNewTermTest do
  # A claim at a leading C node that finds the name's claim from an
  # earlier term of its own (it led again in a new term before raft's
  # loop told it) drops that one and claims anew, whatever other claims
  # the list holds. ESDB_CNODE_TEST_CLAIM_NEW_TERM has each claim see a
  # new term (c_src/cnode/sessions.c); three real C nodes, raw sessions.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 120_000

  defp env(_id, _store), do: [{~c"ESDB_CNODE_TEST_CLAIM_NEW_TERM", ~c"1"}]

  # A process with a session of its own at `node`, running requests for
  # the test.
  defp session(node) do
    test = self()

    pid =
      spawn_link(fn ->
        send(test, {:opened, self(), CNodeCluster.call(node, {:session_open, 100}, 10_000)})
        serve(node, test)
      end)

    assert_receive {:opened, ^pid, {:ok, _}}, 15_000
    pid
  end

  defp serve(node, test) do
    receive do
      {:run, request} ->
        send(test, {:ran, self(), CNodeCluster.call(node, request, 10_000)})
        serve(node, test)
    end
  end

  defp run(pid, request) do
    send(pid, {:run, request})
    assert_receive {:ran, ^pid, reply}, 15_000
    reply
  end

  test "a claim replacing its own from an earlier term is granted, next to another " <>
         "session's claim" do
    cns = CNodeCluster.start(tmp_dir!("ex_esdb_cnnewterm"), "nosync", env: &env/2)
    l = CNodeCluster.leader(cns)
    s1 = session(l.name)
    s2 = session(l.name)
    assert {:ok, _} = run(s2, {:session_claim, "a"})
    assert {:ok, t1} = run(s1, {:session_claim, "b"})
    # "b" again in a new term: its claim from t1 is stale, dropped; the
    # claim next to it in the list ("a", s2's) is not "b"'s
    assert {:ok, t2} = run(s1, {:session_claim, "b"})
    assert t2 > t1
  end
end
