defmodule ExESDB.CNodeClusterPeerSessionTest do
  # The sessions a store's ExESDB.CNode.Session opens on the other C
  # nodes of a cluster to claim there count against each C node's limit
  # per client connection (--max-sessions, 8). They are one per C node
  # and end with the session process (linked), however often leadership
  # moves; an open that timed out at a silent C node must not leave one
  # behind that nothing ends (opened there once it runs again, never
  # linked): each such open would take a slot until the client node
  # goes. Three C nodes (priv/ex_esdb_cnode --raft-*), a store of this
  # VM homed on a follower; sessions counted by opening others from this
  # node until refused. Real OS processes, real distribution.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Subscriptions
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  setup do
    dir = tmp_dir!("ex_esdb_cnps")
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f1, f2] = Enum.sort_by(cns -- [l], & &1.id)
    %{dir: dir, cns: cns, l: l, f1: f1, f2: f2}
  end

  # How many sessions this node may still open on C node `cn`: each
  # opened by a process of its own, linked to it (it ends with that
  # process), until the C node refuses; then the processes go.
  defp free_sessions(cn) do
    probes = open_until_refused(cn, [])

    for p <- probes do
      mref = Process.monitor(p)
      Process.exit(p, :kill)
      assert_receive {:DOWN, ^mref, _, _, _}
    end

    length(probes)
  end

  defp open_until_refused(cn, probes) do
    test = self()

    p =
      spawn(fn ->
        ref = make_ref()
        send({:esdb, cn.name}, {:call, self(), ref, {:session_open, 1}})

        receive do
          {^ref, {:ok, cpid}} ->
            Process.link(cpid)
            send(test, {:probe, self(), :opened})
            Process.sleep(:infinity)

          {^ref, other} ->
            send(test, {:probe, self(), other})
        end
      end)

    receive do
      {:probe, ^p, :opened} -> open_until_refused(cn, [p | probes])
      {:probe, ^p, {:error, {:limit_exceeded, :max_sessions, _}}} -> probes
    after
      10_000 -> flunk("#{cn.name} did not answer a session_open")
    end
  end

  # Leadership from `from` to `to` (raft's transfer, asked again while it
  # answers :timeout on a loaded machine); once every C node names `to`.
  defp transfer(ctx, from, to) do
    result =
      Enum.reduce_while(1..5, nil, fn _, _ ->
        case CNodeCluster.call(from.name, {:cluster_transfer, to.id}, 15_000) do
          {:error, :timeout} -> {:cont, :timeout}
          other -> {:halt, other}
        end
      end)

    assert result in [:ok, {:error, {:not_leader, to.name}}]
    assert CNodeCluster.leader(ctx.cns).name == to.name
  end

  defp store_on(ctx, home) do
    store = :"cnps_#{ExESDB.Test.Unique.id()}"
    opts = CNodeCluster.system_opts(store, Path.join(ctx.dir, "#{store}"), home, ctx.cns)
    start_supervised!(Supervisor.child_spec({ExESDB.System, opts}, id: store))

    for cn <- ctx.cns -- [home],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    store
  end

  # where the store's session holds the claim on `name` (nil: none)
  defp claim_at(store, name) do
    session = Process.whereis(ExESDB.CNode.Connection.session_name(store))
    get_in(:sys.get_state(session), [:claims, name, :at])
  end

  test "a claim that follows leadership holds one session on each C node it was at", ctx do
    store = store_on(ctx, ctx.f1)
    {b_l, b_f1, b_f2} = {free_sessions(ctx.l), free_sessions(ctx.f1), free_sessions(ctx.f2)}

    {:ok, _} = Subscriptions.subscribe_to(store, "moving", {:by_stream, "s"}, self())
    assert claim_at(store, "moving") == ctx.l.name

    # back and forth: the claim is taken again at each new leader
    for {from, to} <- [{ctx.l, ctx.f2}, {ctx.f2, ctx.l}, {ctx.l, ctx.f2}, {ctx.f2, ctx.l}] do
      transfer(ctx, from, to)
      wait_until(fn -> claim_at(store, "moving") == to.name end, 30_000)
    end

    # the store's own session on f1; one opened for claims on each other
    assert {free_sessions(ctx.l), free_sessions(ctx.f1), free_sessions(ctx.f2)} ==
             {b_l - 1, b_f1, b_f2 - 1}
  end

  test "a claim whose open timed out at a silent C node leaves no session there", ctx do
    store = :"cnps_#{ExESDB.Test.Unique.id()}"
    opts = CNodeCluster.system_opts(store, Path.join(ctx.dir, "#{store}"), ctx.f1, ctx.cns)
    start_supervised!(Supervisor.child_spec({ExESDB.System, opts}, id: store))

    for cn <- ctx.cns -- [ctx.f1],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    before = {free_sessions(ctx.l), free_sessions(ctx.f2)}

    # the store's own C node answers; the claim goes to the others
    # (the leader it names, or the next when it knows none): silent
    silent = [ctx.l, ctx.f2]
    for cn <- silent, do: pause_os_process!(cn.os_pid)
    on_exit(fn -> for cn <- silent, do: System.cmd("kill", ["-CONT", "#{cn.os_pid}"]) end)

    assert {:error, _} = Subscriptions.subscribe_to(store, "p", {:by_stream, "s"}, self())

    for cn <- silent, do: System.cmd("kill", ["-CONT", "#{cn.os_pid}"])
    # the store goes, and with its session process every session it holds
    stop_supervised!(store)

    assert {free_sessions(ctx.l), free_sessions(ctx.f2)} == before
  end
end
