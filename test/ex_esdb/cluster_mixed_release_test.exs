defmodule ExESDB.ClusterMixedReleaseTest do
  # A gateway on this release forwarding a try to a leader on an older
  # one, which lacks submit_on_leader/5: erpc answers the call with
  # {:exception, :undef, _}, which escaped the gateway as a raise. A
  # :peer node started without ExESDB's code stands for that leader.
  use ExUnit.Case, async: false

  alias ExESDB.Backend.Cluster

  setup do
    u = ExESDB.Test.Unique.id()
    {:ok, peer, node} = ExESDB.Test.Peer.start(%{name: :"mixrel#{u}"})

    on_exit(fn ->
      try do
        :peer.stop(peer)
      catch
        :exit, _ -> :ok
      end
    end)

    %{node: node}
  end

  test "a leader without submit_on_leader/5 answers a clear error, not a raise", %{node: node} do
    h = %{store_id: :mixrel, ref: nil}
    seen = %{term: 1, leader_id: 2}

    assert Cluster.remote(node, h, seen, {:checkpoint_delete, "x"}, 2_000) ==
             {:error, {:unreachable, {:incompatible_release, node}}}
  end
end
