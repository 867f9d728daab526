defmodule ExESDB.CNodePersistentOwnerTest do
  # One owner per persistent subscription name on a C node store: a
  # second client node (a :peer) subscribing the same name is refused
  # with {:error, :subscription_already_exists}; once the owner's
  # subscription ends (or its node goes), the other node may take it.
  # Another name is not refused. A real C node, real distribution.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Subscriptions
  alias ExESDB.Test.CNodeCluster

  @moduletag timeout: 120_000
  @bin System.get_env("ESDB_CNODE_BIN") || Path.expand("../../priv/ex_esdb_cnode", __DIR__)

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnpo")}
  end

  defp start_cnode(dir), do: CNodeCluster.start_single(@bin, "cnpo", Path.join(dir, "ext"))

  defp start_peer(store, dir, cnode) do
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    {:ok, peer, pnode} =
      ExESDB.Test.Peer.start(%{name: :"cnpo_peer#{ExESDB.Test.Unique.id()}", args: args})

    on_exit(fn -> catch_exit(:peer.stop(peer)) end)

    :ok =
      :erpc.call(pnode, ExESDB.Test.ClusterPeer, :start, [
        [store_id: store, data_dir: dir, cnode: cnode]
      ])

    {peer, pnode}
  end

  defp subscribe_there(pnode, store, name) do
    there = :erpc.call(pnode, :erlang, :spawn, [Process, :sleep, [:infinity]])
    :erpc.call(pnode, Subscriptions, :subscribe_to, [store, name, {:by_stream, "$all"}, there])
  end

  test "a second client node subscribing an owned persistent name is refused", %{dir: dir} do
    cnode = start_cnode(dir)
    store = :"cnpo_#{ExESDB.Test.Unique.id()}"
    start_supervised!({ExESDB.System, store_id: store, data_dir: dir, cnode: cnode})
    {peer, pnode} = start_peer(store, dir, cnode)

    {:ok, sub} = Subscriptions.subscribe_to(store, "p", {:by_stream, "$all"})

    assert {:error, :subscription_already_exists} = subscribe_there(pnode, store, "p")
    # another name is free there
    assert {:ok, _} = subscribe_there(pnode, store, "q")

    assert {:error, :subscription_already_exists} =
             Subscriptions.subscribe_to(store, "q", {:by_stream, "$all"})

    # the owner's subscription ends: the name is free for the other node
    ref = Process.monitor(sub)
    Process.exit(sub, :kill)
    assert_receive {:DOWN, ^ref, _, _, _}
    wait_until(fn -> match?({:ok, _}, subscribe_there(pnode, store, "p")) end, 10_000)

    # the other node goes: its names are free here
    :peer.stop(peer)

    wait_until(
      fn -> match?({:ok, _}, Subscriptions.subscribe_to(store, "q", {:by_stream, "$all"})) end,
      10_000
    )
  end
end
