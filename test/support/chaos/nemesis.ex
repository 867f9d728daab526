defmodule ExESDB.Chaos.Nemesis do
  @moduledoc false
  # Faults against an ExESDB.Chaos.Cluster while the workload runs, one
  # at a time, each recorded in the history as instants (type :nemesis,
  # phase :start | :elected (a leader again) | :heal | :recovered, the fault's kind
  # and the nodes it hit; :minority, for a partition, the nodes cut off
  # from a majority). A cycle: wait until the cluster is whole (one leader
  # every node agrees on, every node caught up), inject, hold, heal
  # (restart, resume, remove the cuts), wait until whole again.
  #
  # Kinds: :kill_leader, :kill_follower (kill -9, restart on the same
  # data directory and name), :pause_leader (SIGSTOP until the others
  # elected, SIGCONT), :isolate_leader, :isolate_follower (every link of
  # one node cut), :split (5+ nodes: the leader and one follower cut from
  # the rest), :ring (5+ nodes: each node keeps its two neighbours),
  # :membership (a fresh node added as a voter, then removed),
  # :replace_follower (killed, its store replaced by a backup taken just
  # before, its raft state gone, started again: it comes back as a new
  # member from a copy).
  #
  # Holding a fault is not deciding a result: partitions and pauses are
  # held until the others elected a leader (bounded), then `hold_ms`
  # more, so writes flow on the majority side while the cut-off side
  # believes what it believed.

  import ExESDB.Test.ClusterHelpers, only: [wait_until: 2]

  alias ExESDB.Chaos.{Cluster, History, Partition}

  @doc """
  Run faults of `kinds` (in turn) against ctx until `stop`: {:cycles, n}
  or {:until, monotonic ms}. Options: :hold_ms (2 election timeouts),
  :quiet_ms (between cycles, 1 election timeout).
  """
  def run(ctx, history, kinds, stop, opts \\ []) do
    et = ctx.election_timeout
    opts = Keyword.merge([hold_ms: 2 * et, quiet_ms: et], opts)
    # the load flowing first: 20 more entries applied
    leader = Cluster.agreed_leader(ctx.store, ctx.nodes)
    applied = Cluster.info(ctx.store, leader).applied
    wait_until(fn -> Cluster.info(ctx.store, leader).applied > applied + 20 end, 30_000)
    loop(ctx, history, kinds, stop, opts, 0)
  end

  defp loop(ctx, h, kinds, stop, opts, i) do
    if done?(stop, i) do
      :ok
    else
      kind = Enum.at(kinds, rem(i, length(kinds)))
      cycle(ctx, h, kind, opts)
      Process.sleep(opts[:quiet_ms])
      loop(ctx, h, kinds, stop, opts, i + 1)
    end
  end

  defp done?({:cycles, n}, i), do: i >= n
  defp done?({:until, t}, _), do: System.monotonic_time(:millisecond) >= t

  defp cycle(ctx, h, kind, opts) do
    whole(ctx)
    leader = Cluster.agreed_leader(ctx.store, ctx.nodes)
    followers = Enum.shuffle(ctx.nodes -- [leader])
    {hit, minority, heal} = inject(ctx, h, kind, leader, followers)

    if kind in [:kill_leader, :kill_follower, :replace_follower],
      do: Enum.each(hit, &Cluster.await_down/1)

    hold(ctx, h, kind, hit, opts)
    record(h, kind, :heal, hit, minority, heal)
    whole(ctx)

    History.record(h, "nemesis", node(), %{
      type: :nemesis,
      fault: kind,
      phase: :recovered,
      nodes: hit
    })
  end

  # The cluster whole again: every node agrees on a leader and has
  # applied what it had applied (60 s: a restarted node replays its log).
  defp whole(ctx) do
    Cluster.caught_up(ctx.store, ctx.nodes, 60_000)
  end

  # Record the start around the injection itself (its interval is the
  # time the fault took to apply); answers {nodes hit, minority, heal fn}.
  defp inject(ctx, h, kind, leader, followers) do
    {hit, minority, act, heal} = plan(ctx, kind, leader, followers)
    op = %{type: :nemesis, fault: kind, phase: :start, nodes: hit, minority: minority}
    :ok = History.run(h, "nemesis", node(), op, act)
    {hit, minority, heal}
  end

  defp record(h, kind, phase, hit, minority, fun) do
    op = %{type: :nemesis, fault: kind, phase: phase, nodes: hit, minority: minority}
    :ok = History.run(h, "nemesis", node(), op, fun)
  end

  defp plan(ctx, :kill_leader, leader, _), do: kill(ctx, leader)
  defp plan(ctx, :kill_follower, _, [f | _]), do: kill(ctx, f)

  defp plan(ctx, :pause_leader, leader, _),
    do: {[leader], nil, fn -> Cluster.pause(ctx, leader) end, fn -> Cluster.resume(ctx, leader) end}

  defp plan(ctx, :isolate_leader, leader, _), do: isolate(ctx, [leader])
  defp plan(ctx, :isolate_follower, _, [f | _]), do: isolate(ctx, [f])
  defp plan(ctx, :split, leader, [f | _]), do: isolate(ctx, [leader, f])

  defp plan(ctx, :ring, _, _) do
    order = Enum.shuffle(ctx.nodes)
    {order, nil, fn -> Partition.ring(ctx, order) end, fn -> Partition.heal(ctx) end}
  end

  # the spare node added as a voter under load, then removed again
  defp plan(ctx, :membership, leader, [f | _]),
    do: {[ctx.joiner], nil, fn -> Cluster.join(ctx, f) end, fn -> Cluster.leave(ctx, leader) end}

  # a follower's store backed up, the follower killed; healed by putting
  # the backup in place of its store directory (its raft state gone) and
  # starting it: it must come back as a new member from a copy of a
  # member's store, never as the voter it was (ExESDB.Cluster, seeding)
  defp plan(ctx, :replace_follower, _, [f | _]) do
    backup = Path.join(ctx.dir, "backup-#{ExESDB.Test.Unique.id()}")

    act = fn ->
      Cluster.backup(ctx, f, backup)
      Cluster.kill(ctx, f)
    end

    heal = fn ->
      Cluster.restore(ctx, f, backup)
      File.rm_rf!(backup)
      Cluster.restart(ctx, f)
    end

    {[f], nil, act, heal}
  end

  defp kill(ctx, node),
    do: {[node], nil, fn -> Cluster.kill(ctx, node) end, fn -> Cluster.restart(ctx, node) end}

  defp isolate(ctx, minority) do
    majority = ctx.nodes -- minority

    {minority, minority, fn -> Partition.split(ctx, [minority, majority]) end,
     fn -> Partition.heal(ctx) end}
  end

  # Faults that take the leader away: until the nodes left with a
  # majority agree on a leader among themselves (bounded; recorded as
  # phase :elected), then hold_ms more. Others: hold_ms.
  defp hold(ctx, h, kind, hit, opts)
       when kind in [:kill_leader, :pause_leader, :isolate_leader, :split] do
    rest = ctx.nodes -- hit

    wait_until(
      fn ->
        Enum.all?(rest, fn n ->
          (Cluster.try_info(ctx.store, n) || %{leader: nil}).leader in rest
        end)
      end,
      30_000
    )

    History.record(h, "nemesis", node(), %{type: :nemesis, fault: kind, phase: :elected, nodes: hit})

    Process.sleep(opts[:hold_ms])
  end

  defp hold(_ctx, _h, _kind, _hit, opts), do: Process.sleep(opts[:hold_ms])
end
