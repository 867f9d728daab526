defmodule ExESDB.Chaos.Faults do
  @moduledoc false
  # What a history with nemesis records (ExESDB.Chaos.Nemesis) says per
  # fault: the anomaly a partition must never show, and the figures
  # docs/RELIABILITY.md reports.
  #
  # minority_ack: an append acknowledged through a node cut off from the
  # majority, invoked after the cut was in place and completed before it
  # was removed. Such a node can reach no leader (its links are cut) and,
  # leading, commit nothing: raft needs a majority.
  #
  # Figures per fault kind: cycles; operations, appends acknowledged
  # (invoked within a cycle: from its start to the next one's), lost and
  # duplicated events (the checker's anomalies, by the cycle their append
  # was invoked in); write unavailability, the longest time without an
  # acknowledged append from the last one before the fault to the first
  # after the cluster was whole again; time to writes, from the fault
  # being in place (the nemesis's kill or nft command returned) until the
  # first acknowledgement of an append invoked after that; and, for faults
  # that take the leader away, time to a leader, from the fault being in
  # place until the nodes left agreed on a new one (as the nemesis saw
  # it, polling every 20 ms) (p50 and max, ms and in election timeouts).

  @doc """
  A workload run's `extend:` beside a nemesis: stops the
  ExESDB.Chaos.Leadership reporter `lead`, adds its anomalies and
  check/1's to the verdict, figures/3, the leader terms and the load
  before and after to its stats.
  """
  def extend(lead, election_timeout, load_before) do
    fn ops, v ->
      seen = ExESDB.Chaos.Leadership.stop(lead)
      extra = check(ops) ++ seen.anomalies

      stats =
        Map.merge(v.stats, %{
          faults: figures(ops, v, election_timeout),
          leader_terms: seen.leaders,
          election_timeout_ms: election_timeout,
          load_before: load_before,
          load_after: String.trim(File.read!("/proc/loadavg"))
        })

      %{
        v
        | valid?: v.valid? and extra == [],
          anomalies: v.anomalies ++ extra,
          counts: Map.merge(v.counts, Enum.frequencies_by(extra, & &1.kind)),
          stats: stats
      }
    end
  end

  @doc "Anomalies of the fault windows in `ops` (invocation order)."
  def check(ops) do
    cycles = cycles(ops)
    appends = Enum.filter(ops, &(&1.type == :append and &1.outcome == :ok))

    for %{start: s, heal: heal} <- cycles,
        s.minority != nil,
        op <- appends,
        op.node in s.minority,
        op.invoked_at >= s.completed_at,
        op.completed_at <= heal.invoked_at do
      %{
        kind: :minority_ack,
        fault: s.fault,
        minority: s.minority,
        op: Map.take(op, [:client, :node, :stream, :expected, :event_ids, :result])
      }
    end
  end

  # Each fault's start, heal, recovered (and elected, for faults that
  # take the leader away) records, from one start to the next.
  defp cycles(ops) do
    ops
    |> Enum.filter(&(&1.type == :nemesis))
    |> Enum.chunk_while(
      [],
      fn
        %{phase: :start} = op, [] -> {:cont, [op]}
        %{phase: :start} = op, acc -> {:cont, Enum.reverse(acc), [op]}
        op, acc -> {:cont, [op | acc]}
      end,
      fn
        [] -> {:cont, []}
        acc -> {:cont, Enum.reverse(acc), []}
      end
    )
    |> Enum.flat_map(fn records ->
      by = Map.new(records, &{&1.phase, &1})

      # a run cut short in the middle of a fault has no recovered record
      if by[:start] && by[:heal] && by[:recovered],
        do: [%{start: by.start, heal: by.heal, recovered: by.recovered, elected: by[:elected]}],
        else: []
    end)
  end

  @doc """
  The figures per fault kind (a map kind => map), from the history and
  the checker's verdict; times in ms.
  """
  def figures(ops, verdict, election_timeout) do
    cycles = cycles(ops)
    clients = Enum.reject(ops, &(&1.type == :nemesis))
    acks = for %{type: :append, outcome: :ok} = op <- clients, do: op
    ack_times = acks |> Enum.map(& &1.completed_at) |> Enum.sort() |> List.to_tuple()
    bounds = Enum.map(cycles, & &1.start.invoked_at) ++ [:infinity]
    by_id = for op <- clients, op.type == :append, id <- op.event_ids, into: %{}, do: {id, op}
    bad = bad_events(verdict.anomalies, by_id)

    cycles
    |> Enum.zip(tl(bounds))
    |> Enum.map(fn {c, next} -> measure(c, next, clients, acks, ack_times, bad) end)
    |> Enum.group_by(& &1.fault)
    |> Map.new(fn {kind, ms} -> {kind, total(ms, election_timeout)} end)
  end

  # {lost | duplicated, invoked_at of the append} of the checker's anomalies
  defp bad_events(anomalies, by_id) do
    for a <- anomalies,
        a.kind in [:lost_event, :duplicate_event],
        id <- ids(a),
        op = by_id[id],
        op do
      {if(a.kind == :lost_event, do: :lost, else: :duplicated), op.invoked_at}
    end
  end

  defp ids(%{kind: :lost_event, missing: ids}), do: ids
  defp ids(%{kind: :duplicate_event, event_id: id}), do: [id]

  defp measure(c, next, clients, acks, ack_times, bad) do
    s = c.start.invoked_at
    within = &(&1 >= s and (next == :infinity or &1 < next))
    in_cycle = Enum.filter(clients, &within.(&1.invoked_at))
    # the fault in place: its command returned (an nft cut under load
    # took over 50 ms; the old leader committed what came before it)
    placed = c.start.completed_at

    first_after =
      acks
      |> Enum.filter(&(&1.invoked_at >= placed))
      |> Enum.map(& &1.completed_at)
      |> Enum.min(fn -> nil end)

    %{
      fault: c.start.fault,
      operations: length(in_cycle),
      acknowledged: Enum.count(in_cycle, &(&1.type == :append and &1.outcome == :ok)),
      lost: Enum.count(bad, fn {k, t} -> k == :lost and within.(t) end),
      duplicated: Enum.count(bad, fn {k, t} -> k == :duplicated and within.(t) end),
      unavailable: ms(longest_gap(ack_times, s, c.recovered.completed_at)),
      writes_again: if(first_after, do: ms(first_after - placed)),
      leader_again: if(c.elected, do: ms(c.elected.invoked_at - placed))
    }
  end

  # The longest time between consecutive acknowledgements, from the last
  # one before `from` to the first one after `to`.
  defp longest_gap(times, from, to) do
    list = Tuple.to_list(times)
    # no acknowledgement before: unavailable since the fault at least
    before = list |> Enum.filter(&(&1 < from)) |> List.last() || from
    {inside, later} = list |> Enum.filter(&(&1 >= from)) |> Enum.split_while(&(&1 <= to))
    seq = [before | inside] ++ Enum.take(later, 1)

    case seq do
      [_, _ | _] ->
        seq |> Enum.chunk_every(2, 1, :discard) |> Enum.map(fn [a, b] -> b - a end) |> Enum.max()

      _ ->
        to - from
    end
  end

  defp ms(native), do: System.convert_time_unit(native, :native, :microsecond) / 1000

  defp total(ms, et) do
    again = ms |> Enum.map(& &1.writes_again) |> Enum.reject(&is_nil/1) |> Enum.sort()
    unavailable = ms |> Enum.map(& &1.unavailable) |> Enum.sort()
    elected = ms |> Enum.map(& &1.leader_again) |> Enum.reject(&is_nil/1) |> Enum.sort()

    %{
      cycles: length(ms),
      operations: sum(ms, :operations),
      acknowledged: sum(ms, :acknowledged),
      lost: sum(ms, :lost),
      duplicated: sum(ms, :duplicated),
      unavailable_max_ms: round1(List.last(unavailable)),
      writes_again_p50_ms: round1(median(again)),
      writes_again_max_ms: round1(List.last(again)),
      writes_again_p50_et: ratio(median(again), et),
      writes_again_max_et: ratio(List.last(again), et),
      never_writes_again: Enum.count(ms, &is_nil(&1.writes_again)),
      leader_again_p50_ms: round1(median(elected)),
      leader_again_max_ms: round1(List.last(elected)),
      leader_again_p50_et: ratio(median(elected), et),
      leader_again_max_et: ratio(List.last(elected), et)
    }
  end

  defp sum(ms, key), do: ms |> Enum.map(&Map.fetch!(&1, key)) |> Enum.sum()
  defp median([]), do: nil
  defp median(l), do: Enum.at(l, div(length(l) - 1, 2))
  defp round1(nil), do: nil
  defp round1(x), do: Float.round(x * 1.0, 1)
  defp ratio(nil, _), do: nil
  defp ratio(x, et), do: Float.round(x / et, 2)
end
