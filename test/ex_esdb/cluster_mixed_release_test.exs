defmodule ExESDB.ClusterMixedReleaseTest do
  # A gateway on this release forwarding a try to a leader on an older
  # one, which lacks submit_on_leader/5: erpc answers the call with
  # {:exception, :undef, _}, which escaped the gateway as a raise. A
  # :peer node started without ExESDB's code stands for that leader.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers, only: [wait_until: 1]

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

    assert Cluster.remote(node, h, seen, {:checkpoint_delete, "x"}, 30_000) ==
             {:error, {:unreachable, {:incompatible_release, node}}}
  end

  # A leader on a release whose ex_esdb_backend has no request form of
  # puts and deletes ({request, Id, Retry, Command}, the gateway's since
  # request/1): its queue/3 raises function_clause before anything
  # reaches its store. Stood for by that release's two functions on the
  # path, loaded into the peer.
  test "a leader without the request form answers a clear error", %{node: node} do
    load(node, """
    -module('Elixir.ExESDB.Backend.Cluster').
    -export([submit_on_leader/5]).
    submit_on_leader(_Store, Command, Timeout, _Term, _Until) ->
        ex_esdb_backend:submit(nil, Command, Timeout).
    """)

    load(node, """
    -module(ex_esdb_backend).
    -export([submit/3]).
    submit(H, Command, _Timeout) -> queue(H, make_ref(), Command).
    queue(_H, _Ref, {checkpoint_delete, _Name}) -> ok.
    """)

    h = %{store_id: :mixrel, ref: nil}
    seen = %{term: 1, leader_id: 2}
    assert Cluster.remote(node, h, seen, {:checkpoint_delete, "x"}, 30_000) == :ok
    request = Cluster.request({:checkpoint_delete, "x"})

    assert Cluster.remote(node, h, seen, request, 30_000) ==
             {:error, {:unreachable, {:incompatible_release, node}}}
  end

  # A leader sends a put or delete in its request form (flag bits a
  # store of an earlier release cannot read: its replica would stop)
  # only when every member's node knows request ids. The peer first
  # stands for a member on an older release (this module's request/1
  # is not there), then, with this release's code on its path, for one
  # upgraded.
  test "request ids only once every member's release knows them", %{node: node} do
    assert Cluster.knows_requests?(node())
    refute Cluster.knows_requests?(nil)
    refute Cluster.ask_knows_requests(node)
    # not known: no, and never a wait (asked in the background)
    refute Cluster.knows_requests?(node)
    :ok = :erpc.call(node, :code, :add_paths, [:code.get_path()], 30_000)
    # asked again, not remembered as a no; then known without asking
    wait_until(fn -> Cluster.knows_requests?(node) end)
    assert Cluster.ask_knows_requests(node)
    # a node that cannot be reached does not know them
    [_, host] = node() |> Atom.to_string() |> String.split("@")
    refute Cluster.ask_knows_requests(:"nowhere#{ExESDB.Test.Unique.id()}@#{host}")
  end

  # Many puts at once asking about a node not known yet start one asker:
  # the others find its name taken and go quietly (before, each raised in
  # its own process, and every one was logged as a crash).
  test "askers of one node started at once: one asks, none crashes", %{node: node} do
    log =
      ExUnit.CaptureLog.capture_log(fn ->
        1..50
        |> Enum.map(fn _ -> Task.async(fn -> Cluster.knows_requests?(node) end) end)
        |> Enum.each(&refute Task.await(&1))

        wait_until(fn -> Process.whereis(:"exesdb_knows_requests_#{node}") == nil end)
      end)

    refute log =~ "could not register"
    refute log =~ "raised an exception"
  end

  defp load(node, source) do
    {:ok, tokens, _} = :erl_scan.string(String.to_charlist(source))

    forms =
      tokens
      |> Enum.chunk_while(
        [],
        fn
          {:dot, _} = t, acc -> {:cont, Enum.reverse([t | acc]), []}
          t, acc -> {:cont, [t | acc]}
        end,
        fn acc -> {:cont, acc} end
      )
      |> Enum.map(fn form ->
        {:ok, f} = :erl_parse.parse_form(form)
        f
      end)

    {:ok, mod, bin} = :compile.forms(forms, [:binary])
    {:module, ^mod} = :erpc.call(node, :code, :load_binary, [mod, ~c"mixrel", bin])
  end
end
