defmodule ExESDB.Chaos.CNodeNemesis do
  @moduledoc false
  # ExESDB.Chaos.Nemesis's faults against a cluster of C node replicas
  # (ExESDB.Chaos.CNodes), recorded the same way (type :nemesis, phases
  # :start, :elected, :heal, :recovered), so ExESDB.Chaos.Faults checks
  # and measures them alike. A cycle: wait until the C nodes are whole
  # (one leader they all name, every one caught up), inject, hold, heal,
  # wait until whole again.
  #
  # Kinds: :kill_leader, :kill_follower (kill -9 of the C node, started
  # again on its store and raft id), :pause_leader, :pause_follower
  # (SIGSTOP, SIGCONT), :isolate_leader, :isolate_follower (partitions:
  # the C node and its own client node cut from the other C nodes and
  # clients: raft between C nodes, distribution between clients and C
  # nodes; the client can reach only its isolated C node, so its writes
  # must not be acknowledged: :minority is [client, C node]),
  # :membership (a new, empty C node added as a voter through the
  # leader, then removed and stopped: ctx.spare, CNodes.join/leave),
  # :replace_follower (a follower's store backed up through its C node
  # under load, the C node killed; healed by putting the backup in place
  # of its store: started as the voter it was it must refuse, then it
  # comes back under a new raft id, added and made a voter:
  # CNodes.replace/3), :disk_full (the store of ctx.disk, on a tmpfs of
  # its own, filled: the C node must fail-stop and stay up, the others
  # elect if it led and go on; healed by freeing the space and a kill -9
  # and restart on its store), :kill_client (kill -9 of a client node
  # that holds no persistent subscription, under load, with a transient
  # subscription on its C node: its calls in flight end outcome-unknown,
  # its C node must drop the subscription; started again on the same
  # name and ports).

  import ExESDB.Test.ClusterHelpers, only: [wait_until: 2]

  alias ExESDB.Chaos.{CNodes, History, Partition}

  @on_follower [:kill_follower, :pause_follower, :isolate_follower, :replace_follower]
  @killed [:kill_leader, :kill_follower, :replace_follower, :kill_client]

  @doc """
  Run faults of `kinds` (in turn) until `stop`: {:cycles, n} or {:until,
  monotonic ms}. Options: :hold_ms (2 election timeouts), :quiet_ms (1),
  :followers (C nodes a follower fault hits first, in turn: the i-th
  follower fault takes the first follower of the list rotated by i; by default
  a follower at random), :disk_role (:leader: ctx.disk is made the
  leader before its disk fills; by default it is hit in whatever role it has),
  :killable (the client nodes :kill_client may kill: those holding no
  persistent subscription; by default all but the first two).
  """
  def run(ctx, history, kinds, stop, opts \\ []) do
    et = ctx.election_timeout
    opts = Keyword.merge([hold_ms: 2 * et, quiet_ms: et], opts)
    # the load flowing first: 20 more entries applied
    l = CNodes.leader(ctx, ctx.cnodes)
    applied = CNodes.try_info(l).applied
    wait_until(fn -> (CNodes.try_info(l) || %{applied: 0}).applied > applied + 20 end, 30_000)
    loop(ctx, history, kinds, stop, opts, 0)
  end

  defp loop(ctx, h, kinds, stop, opts, i) do
    if done?(stop, i) do
      :ok
    else
      # how many follower faults came before this one
      nf = Enum.count(0..(i - 1)//1, &(Enum.at(kinds, rem(&1, length(kinds))) in @on_follower))
      cycle(ctx, h, Enum.at(kinds, rem(i, length(kinds))), opts, nf)
      Process.sleep(opts[:quiet_ms])
      loop(ctx, h, kinds, stop, opts, i + 1)
    end
  end

  defp done?({:cycles, n}, i), do: i >= n
  defp done?({:until, t}, _), do: System.monotonic_time(:millisecond) >= t

  defp cycle(ctx, h, kind, opts, i) do
    CNodes.caught_up(ctx, 60_000)
    if kind == :disk_full and opts[:disk_role] == :leader, do: lead(ctx, ctx.disk)
    leader = CNodes.leader(ctx, ctx.cnodes)
    # (never the tmpfs C node for a replacement: its directory is a mount)
    f =
      follower(
        ctx.cnodes -- [leader | if(kind == :replace_follower, do: [ctx.disk], else: [])],
        opts[:followers],
        i
      )

    {hit, minority, act, heal} = plan(ctx, kind, leader, f, opts)
    op = %{type: :nemesis, fault: kind, phase: :start, nodes: hit, minority: minority}
    :ok = History.run(h, "nemesis", node(), op, act)
    if kind in @killed, do: Enum.each(hit, &CNodes.await_down/1)
    if kind == :kill_client, do: client_gone(ctx, hit)
    hold(ctx, h, kind, hit, Keyword.put(opts, :leader, leader))
    op = %{type: :nemesis, fault: kind, phase: :heal, nodes: hit, minority: minority}
    :ok = History.run(h, "nemesis", node(), op, heal)
    CNodes.caught_up(ctx, 60_000)

    History.record(h, "nemesis", node(), %{
      type: :nemesis,
      fault: kind,
      phase: :recovered,
      nodes: hit
    })
  end

  defp follower(fs, nil, _i), do: Enum.random(fs)

  defp follower(fs, prefer, i) do
    {a, b} = Enum.split(prefer, rem(i, length(prefer)))
    Enum.find(b ++ a, &(&1 in fs)) || Enum.random(fs)
  end

  defp plan(ctx, :kill_leader, l, _, _), do: kill(ctx, l)
  defp plan(ctx, :kill_follower, _, f, _), do: kill(ctx, f)
  defp plan(ctx, :pause_leader, l, _, _), do: pause(ctx, l)
  defp plan(ctx, :pause_follower, _, f, _), do: pause(ctx, f)
  defp plan(ctx, :isolate_leader, l, _, _), do: isolate(ctx, l)
  defp plan(ctx, :isolate_follower, _, f, _), do: isolate(ctx, f)

  defp plan(ctx, :membership, _, _, _),
    do: {[ctx.spare], nil, fn -> CNodes.join(ctx) end, fn -> CNodes.leave(ctx) end}

  defp plan(ctx, :replace_follower, _, f, _) do
    backup = Path.join(ctx.dir, "backup-#{ExESDB.Test.Unique.id()}")

    act = fn ->
      CNodes.backup(f, backup)
      CNodes.kill(ctx, f)
    end

    heal = fn ->
      CNodes.replace(ctx, f, backup)
      File.rm_rf!(backup)
      :ok
    end

    {[f], nil, act, heal}
  end

  defp plan(ctx, :disk_full, _, _, _) do
    d = ctx.disk
    dir = ctx.specs[d].store_dir

    heal = fn ->
      File.rm!(Path.join(dir, "filler"))
      CNodes.kill(ctx, d)
      CNodes.await_down(d)
      CNodes.restart(ctx, d)
    end

    {[d], nil, fn -> ExESDB.Chaos.Cluster.fill(dir) end, heal}
  end

  # a client node without persistent subscriptions, holding a transient
  # one on its C node (which must drop it with the client)
  defp plan(ctx, :kill_client, _, _, opts) do
    cl = Enum.random(opts[:killable] || Enum.drop(ctx.nodes, 2))
    home = ctx.home[cl]

    act = fn ->
      # (a stats call may time out under load: until one answers)
      before = wait_until(fn -> CNodes.subscribers(home) end, 30_000)
      {:ok, _} = :erpc.call(cl, CNodes, :hold_subscription, [ctx.store], 60_000)
      wait_until(fn -> (CNodes.subscribers(home) || 0) > before end, 30_000)
      Process.put({:subscribers, home}, before)
      CNodes.kill(ctx, cl)
    end

    {[cl], nil, act, fn -> CNodes.restart_client(ctx, cl) end}
  end

  defp kill(ctx, cn),
    do: {[cn], nil, fn -> CNodes.kill(ctx, cn) end, fn -> CNodes.restart(ctx, cn) end}

  defp pause(ctx, cn),
    do: {[cn], nil, fn -> CNodes.pause(ctx, cn) end, fn -> CNodes.resume(ctx, cn) end}

  defp isolate(ctx, cn) do
    minority = [cn, ctx.client_of[cn]]
    majority = (ctx.cnodes ++ ctx.nodes) -- minority

    {[cn], minority, fn -> Partition.split(ctx, [minority, majority]) end,
     fn -> Partition.heal(ctx) end}
  end

  # A killed client's C node drops its session's subscription (bounded);
  # its ports held until it starts again.
  defp client_gone(ctx, [cl]) do
    home = ctx.home[cl]
    before = Process.delete({:subscribers, home})
    CNodes.hold_ports(ctx, cl)

    wait_until(
      fn -> (CNodes.subscribers(home) || before + 1) <= before end,
      30_000
    )
  end

  # ctx.disk made the leader (a transfer through the leader, bounded)
  defp lead(ctx, cn) do
    wait_until(
      fn ->
        l = CNodes.leader(ctx, ctx.cnodes)
        l == cn or (CNodes.call(l, {:cluster_transfer, CNodes.raft_id(ctx, cn)}, 10_000) && false)
      end,
      30_000
    )

    CNodes.caught_up(ctx, 60_000)
  end

  # Faults that take the leader away: until the other C nodes name a
  # leader among themselves (bounded; recorded as :elected), then
  # hold_ms more. Others: hold_ms.
  defp hold(ctx, h, kind, hit, opts) when kind in [:kill_leader, :pause_leader, :isolate_leader] do
    elected(ctx, h, kind, hit)
    Process.sleep(opts[:hold_ms])
  end

  # A full disk: until its C node reports the failure (its store failed,
  # not leader), and, if it led, until the others elected; then hold_ms.
  defp hold(ctx, h, :disk_full, [d] = hit, opts) do
    wait_until(
      fn -> match?(%{failure: {_, _}, leader: false}, CNodes.try_info(d, 1000)) end,
      60_000
    )

    if opts[:leader] == d, do: elected(ctx, h, :disk_full, hit)
    Process.sleep(opts[:hold_ms])
  end

  # a killed client: its C node dropping its session (client_gone) is
  # the hold; nothing waits on a client's absence
  defp hold(_ctx, _h, :kill_client, _hit, _opts), do: :ok

  # a paused follower is held past the election timeout as well
  defp hold(_ctx, _h, _kind, _hit, opts), do: Process.sleep(opts[:hold_ms])

  # until the other C nodes name a leader among themselves (bounded;
  # recorded as :elected)
  defp elected(ctx, h, kind, hit) do
    rest = ctx.cnodes -- hit

    wait_until(
      fn ->
        Enum.all?(rest, &((CNodes.try_info(&1, 500) || %{leader_node: nil}).leader_node in rest))
      end,
      30_000
    )

    History.record(h, "nemesis", node(), %{type: :nemesis, fault: kind, phase: :elected, nodes: hit})
  end
end
