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
  # leader, then removed and stopped: ctx.spare, CNodes.join/leave).

  import ExESDB.Test.ClusterHelpers, only: [wait_until: 2]

  alias ExESDB.Chaos.{CNodes, History, Partition}

  @on_follower [:kill_follower, :pause_follower, :isolate_follower]

  @doc """
  Run faults of `kinds` (in turn) until `stop`: {:cycles, n} or {:until,
  monotonic ms}. Options: :hold_ms (2 election timeouts), :quiet_ms (1),
  :followers (C nodes a follower fault hits first, in turn: the i-th
  follower fault takes the first follower of the list rotated by i; by default
  a follower at random).
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
    leader = CNodes.leader(ctx, ctx.cnodes)
    f = follower(ctx.cnodes -- [leader], opts[:followers], i)
    {hit, minority, act, heal} = plan(ctx, kind, leader, f)
    op = %{type: :nemesis, fault: kind, phase: :start, nodes: hit, minority: minority}
    :ok = History.run(h, "nemesis", node(), op, act)
    if kind in [:kill_leader, :kill_follower], do: Enum.each(hit, &CNodes.await_down/1)
    hold(ctx, h, kind, hit, opts)
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

  defp plan(ctx, :kill_leader, l, _), do: kill(ctx, l)
  defp plan(ctx, :kill_follower, _, f), do: kill(ctx, f)
  defp plan(ctx, :pause_leader, l, _), do: pause(ctx, l)
  defp plan(ctx, :pause_follower, _, f), do: pause(ctx, f)
  defp plan(ctx, :isolate_leader, l, _), do: isolate(ctx, l)
  defp plan(ctx, :isolate_follower, _, f), do: isolate(ctx, f)

  defp plan(ctx, :membership, _, _),
    do: {[ctx.spare], nil, fn -> CNodes.join(ctx) end, fn -> CNodes.leave(ctx) end}

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

  # Faults that take the leader away: until the other C nodes name a
  # leader among themselves (bounded; recorded as :elected), then
  # hold_ms more. Others: hold_ms.
  defp hold(ctx, h, kind, hit, opts) when kind in [:kill_leader, :pause_leader, :isolate_leader] do
    rest = ctx.cnodes -- hit

    wait_until(
      fn ->
        Enum.all?(rest, &((CNodes.try_info(&1, 500) || %{leader_node: nil}).leader_node in rest))
      end,
      30_000
    )

    History.record(h, "nemesis", node(), %{type: :nemesis, fault: kind, phase: :elected, nodes: hit})

    Process.sleep(opts[:hold_ms])
  end

  # a paused follower is held past the election timeout as well
  defp hold(_ctx, _h, _kind, _hit, opts), do: Process.sleep(opts[:hold_ms])
end
