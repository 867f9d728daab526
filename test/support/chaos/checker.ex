defmodule ExESDB.Chaos.Checker do
  @moduledoc false
  # Checks a history (ExESDB.Chaos.History) against the final state of
  # every replica. A replica's state is
  #   %{all: [event], streams: %{stream_id => [event]}}
  # with event = %{event_id:, stream_id:, version:, position:}, $all in
  # position order and each stream in version order, as read back.
  #
  # check/3 answers %{valid?: boolean, anomalies: [map], counts: %{kind =>
  # n}, stats: map}. Each anomaly is a map with :kind, :node (the replica it
  # was found on, where it applies) and the operations and events involved.
  #
  # What is checked (issue 14):
  #   on every replica: $all positions 1..n without a gap, no event id
  #   twice, stream versions 1..k without a gap, each stream = $all's events
  #   of that stream in the same order with the same positions; every
  #   replica's $all identical;
  #   per append: acknowledged -> all its events present (lost_event);
  #   failed -> none present (failed_append_present); present -> all or none
  #   and contiguous in its stream and in $all (non_atomic_append); the
  #   acknowledged version (and position, when the answer carried one) is
  #   where its events are (wrong_ack); expected version honoured
  #   (expected_version_violated); no event that no append wrote
  #   (invented_event);
  #   real time: an append acknowledged before another was invoked has
  #   lower positions (real_time_order);
  #   reads: a prefix of the final stream (read_not_prefix), nothing
  #   appended after the read completed (future_read), and a linearizable
  #   read sees every append acknowledged before it was invoked
  #   (stale_read), a local one every append its client acknowledged
  #   through the same node before (read_your_writes);
  #   persistent subscriptions: delivered events exist and match
  #   (subscription_phantom, subscription_mismatch), no version skipped per
  #   stream, per subscriber or, partitioned by stream, across its
  #   subscribers (subscription_gap), every selected event delivered at
  #   least once to one of its subscribers (subscription_missed).
  # Outcome-unknown appends may be present or absent, but atomically.

  # Anomalies kept per kind in the verdict (the counts are complete).
  @keep 50

  def check(ops, replicas, opts \\ []) do
    keep = Keyword.get(opts, :keep, @keep)
    ops = Enum.map(ops, &settle/1)
    nodes = replicas |> Map.keys() |> Enum.sort()

    anomalies =
      Enum.flat_map(nodes, &replica_anomalies(&1, replicas[&1])) ++
        divergence(nodes, replicas) ++
        Enum.flat_map(nodes, &history_anomalies(&1, replicas[&1], ops))

    counts = Enum.frequencies_by(anomalies, & &1.kind)

    kept =
      anomalies
      |> Enum.group_by(& &1.kind)
      |> Enum.flat_map(fn {_, list} -> Enum.take(list, keep) end)

    %{
      valid?: anomalies == [],
      anomalies: kept,
      counts: counts,
      stats: stats(ops, replicas, nodes, counts)
    }
  end

  # An operation never completed: its outcome is unknown, its completion
  # is after everything.
  defp settle(%{completed_at: nil} = op), do: %{op | outcome: :unknown}
  defp settle(op), do: op

  defp stats(ops, replicas, nodes, counts) do
    appends = Enum.filter(ops, &(&1.type == :append))
    by = Enum.frequencies_by(appends, & &1.outcome)

    %{
      operations: Enum.count(ops, &(&1.type != :nemesis)),
      appends: length(appends),
      acknowledged: Map.get(by, :ok, 0),
      failed: Map.get(by, :fail, 0),
      unknown: Map.get(by, :unknown, 0),
      acknowledged_events: appends |> Enum.filter(&(&1.outcome == :ok)) |> event_count(),
      reads: Enum.count(ops, &(&1.type == :read)),
      linearizable_reads:
        Enum.count(
          ops,
          &(&1.type == :read and &1.consistency == :linearizable and &1.outcome == :ok)
        ),
      subscribed: Enum.count(ops, &(&1.type == :subscribe and &1.outcome == :ok)),
      deliveries: Enum.count(ops, &(&1.type == :deliver)),
      replicas: length(nodes),
      events: Map.new(nodes, &{&1, length(replicas[&1].all)}),
      lost: Map.get(counts, :lost_event, 0),
      duplicates: Map.get(counts, :duplicate_event, 0),
      anomalies: counts |> Map.values() |> Enum.sum()
    }
  end

  defp event_count(appends),
    do: appends |> Enum.flat_map(& &1.event_ids) |> Enum.uniq() |> length()

  ## one replica on its own

  defp replica_anomalies(node, %{all: all, streams: streams}) do
    position_gaps(node, all) ++
      duplicates(node, all) ++
      Enum.flat_map(streams, fn {id, evs} -> version_gaps(node, id, evs) end) ++
      stream_vs_all(node, all, streams)
  end

  defp position_gaps(node, all) do
    all
    |> Enum.with_index(1)
    |> Enum.find(fn {ev, i} -> ev.position != i end)
    |> case do
      nil -> []
      {ev, i} -> [%{kind: :position_gap, node: node, expected: i, found: ev.position, event: ev}]
    end
  end

  defp duplicates(node, all) do
    all
    |> Enum.group_by(& &1.event_id)
    |> Enum.filter(fn {_, evs} -> length(evs) > 1 end)
    |> Enum.map(fn {id, evs} ->
      %{kind: :duplicate_event, node: node, event_id: id, events: evs}
    end)
  end

  defp version_gaps(node, stream, evs) do
    evs
    |> Enum.with_index(1)
    |> Enum.find(fn {ev, i} -> ev.version != i end)
    |> case do
      nil ->
        []

      {ev, i} ->
        [
          %{
            kind: :version_gap,
            node: node,
            stream: stream,
            expected: i,
            found: ev.version,
            event: ev
          }
        ]
    end
  end

  # Each stream read on its own must be $all's events of that stream, in
  # $all's order, with the same versions and positions.
  defp stream_vs_all(node, all, streams) do
    from_all = Enum.group_by(all, & &1.stream_id)

    (Map.keys(from_all) ++ Map.keys(streams))
    |> Enum.uniq()
    |> Enum.flat_map(fn id ->
      a = Map.get(from_all, id, []) |> Enum.map(&key/1)
      s = Map.get(streams, id, []) |> Enum.map(&key/1)

      if a == s do
        []
      else
        i = first_difference(a, s)

        [
          %{
            kind: :stream_order_mismatch,
            node: node,
            stream: id,
            index: i,
            in_all: Enum.at(a, i),
            in_stream: Enum.at(s, i)
          }
        ]
      end
    end)
  end

  defp key(ev), do: {ev.event_id, ev.stream_id, ev.version, ev.position}

  defp first_difference(a, b) do
    Enum.zip(a, b) |> Enum.find_index(fn {x, y} -> x != y end) || min(length(a), length(b))
  end

  ## replicas against each other

  defp divergence([], _), do: []

  defp divergence([first | rest], replicas) do
    ref = Enum.map(replicas[first].all, &key/1)

    Enum.flat_map(rest, fn node ->
      other = Enum.map(replicas[node].all, &key/1)

      if other == ref do
        []
      else
        i = first_difference(ref, other)

        [
          %{
            kind: :replica_divergence,
            node: node,
            reference: first,
            position: i + 1,
            reference_event: Enum.at(ref, i),
            event: Enum.at(other, i),
            reference_events: length(ref),
            events: length(other)
          }
        ]
      end
    end)
  end

  ## the history against one replica

  defp history_anomalies(node, state, ops) do
    index = Map.new(Enum.reverse(state.all), &{&1.event_id, &1})
    appends = Enum.filter(ops, &(&1.type == :append))
    # ids some append that did not fail carries (a failed retry of an
    # append that went through is no anomaly)
    maybe = for op <- appends, op.outcome != :fail, id <- op.event_ids, into: MapSet.new(), do: id
    placed = Enum.map(appends, &place(&1, index))
    # the earliest invocation of an append carrying each id: a retry's
    # events were written by whichever attempt went through
    invoked =
      for op <- appends, id <- op.event_ids, reduce: %{} do
        acc -> Map.update(acc, id, op.invoked_at, &min(&1, op.invoked_at))
      end

    Enum.flat_map(placed, &append_anomalies(node, &1, maybe)) ++
      invented(node, state.all, appends) ++
      real_time(node, placed, invoked) ++
      read_anomalies(node, state, ops, appends, index, invoked) ++
      subscription_anomalies(node, state, ops, index)
  end

  # An append with the stored events of its ids (nil for an absent one).
  defp place(op, index), do: {op, Enum.map(op.event_ids, &Map.get(index, &1))}

  defp append_anomalies(node, {op, found}, maybe) do
    present = Enum.reject(found, &is_nil/1)
    missing = for {id, nil} <- Enum.zip(op.event_ids, found), do: id

    cond do
      op.outcome == :ok and missing != [] ->
        [%{kind: :lost_event, node: node, op: brief(op), missing: missing, present: present}]

      op.outcome == :fail and present != [] ->
        if Enum.any?(present, &(&1.event_id not in maybe)),
          do: [%{kind: :failed_append_present, node: node, op: brief(op), present: present}],
          else: []

      present == [] ->
        []

      missing != [] ->
        [%{kind: :non_atomic_append, node: node, op: brief(op), missing: missing, present: present}]

      true ->
        placement(node, op, present)
    end
  end

  # All of the append's events are present: contiguous, in its stream,
  # where the answer said, after the version it expected.
  defp placement(node, op, [first | _] = evs) do
    last = List.last(evs)
    n = length(evs)

    contiguous =
      Enum.all?(evs, &(&1.stream_id == op.stream)) and
        Enum.map(evs, & &1.position) == Enum.to_list(first.position..(first.position + n - 1)) and
        Enum.map(evs, & &1.version) == Enum.to_list(first.version..(first.version + n - 1))

    if contiguous do
      ack(node, op, first, last) ++ expected(node, op, first)
    else
      [%{kind: :non_atomic_append, node: node, op: brief(op), events: evs}]
    end
  end

  defp ack(node, %{outcome: :ok, result: result} = op, first, last) do
    {version, position} =
      case result do
        {:ok, v, p} -> {v, p}
        {:ok, v} -> {v, nil}
      end

    if version != last.version or (position != nil and position != first.position),
      do: [
        %{
          kind: :wrong_ack,
          node: node,
          op: brief(op),
          acked: %{version: version, position: position},
          stored: %{version: last.version, position: first.position}
        }
      ],
      else: []
  end

  defp ack(_, _, _, _), do: []

  defp expected(node, op, first) do
    ok =
      case op.expected do
        :any -> true
        :no_stream -> first.version == 1
        :stream_exists -> first.version > 1
        v when is_integer(v) -> first.version == v + 1
      end

    if ok,
      do: [],
      else: [
        %{kind: :expected_version_violated, node: node, op: brief(op), first_version: first.version}
      ]
  end

  defp invented(node, all, appends) do
    known = for op <- appends, id <- op.event_ids, into: MapSet.new(), do: id

    for ev <- all, ev.event_id not in known, do: %{kind: :invented_event, node: node, event: ev}
  end

  # An append acknowledged before another (acknowledged or unknown, and
  # present) was invoked must be before it in $all. Sweep the later ones by
  # invocation, the earlier ones by completion, keeping the highest
  # position acknowledged so far.
  defp real_time(node, placed, invoked) do
    landed =
      for {op, [first | _] = evs} <- placed,
          op.outcome != :fail,
          Enum.all?(evs, & &1),
          do: %{
            op: op,
            invoked: Map.fetch!(invoked, first.event_id),
            first: first.position,
            last: List.last(evs).position
          }

    acked = landed |> Enum.filter(&(&1.op.outcome == :ok)) |> Enum.sort_by(& &1.op.completed_at)
    later = Enum.sort_by(landed, & &1.invoked)

    {anomalies, _, _} =
      Enum.reduce(later, {[], acked, nil}, fn b, {acc, pending, max} ->
        {done, pending} = Enum.split_while(pending, &(&1.op.completed_at < b.invoked))
        max = Enum.reduce(done, max, &if(&2 == nil or &1.last > &2.last, do: &1, else: &2))

        if max && max.op != b.op && max.last >= b.first,
          do:
            {[
               %{
                 kind: :real_time_order,
                 node: node,
                 earlier: brief(max.op),
                 earlier_positions: {max.first, max.last},
                 later: brief(b.op),
                 later_positions: {b.first, b.last}
               }
               | acc
             ], pending, max},
          else: {acc, pending, max}
      end)

    Enum.reverse(anomalies)
  end

  # Per stream, reads in invocation order against the appends acknowledged
  # before each (by completion): linear in the history, not quadratic.
  defp read_anomalies(node, state, ops, appends, index, invoked) do
    acked = appends |> Enum.filter(&(&1.outcome == :ok)) |> Enum.group_by(& &1.stream)

    for(%{type: :read, outcome: :ok, result: {:ok, ids}} = r <- ops, is_list(ids), do: r)
    |> Enum.group_by(& &1.stream)
    |> Enum.flat_map(fn {stream, reads} ->
      final = state.streams |> Map.get(stream, []) |> Enum.map(& &1.event_id)
      # the latest invocation among the appends of versions 1..k, per k
      {latest, _} =
        Enum.map_reduce(final, nil, fn id, m ->
          at = max_nil(Map.get(invoked, id), m)
          {at, at}
        end)

      latest = List.to_tuple(latest)
      tops = acked_tops(Map.get(acked, stream, []), index)
      {lin, local} = Enum.split_with(reads, &(&1.consistency == :linearizable))

      # a local read may lag, but not behind its own client's
      # acknowledged appends through the same node (read-your-writes)
      sessions =
        local
        |> Enum.group_by(&{&1.client, &1.node})
        |> Enum.flat_map(fn {{c, n}, rs} ->
          own = Enum.filter(tops, &(&1.op.client == c and &1.op.node == n))
          stream_reads(node, rs, final, latest, own, :read_your_writes)
        end)

      stream_reads(node, lin, final, latest, tops, :stale_read) ++ sessions
    end)
  end

  defp max_nil(nil, b), do: b
  defp max_nil(a, nil), do: a
  defp max_nil(a, b), do: max(a, b)

  # Acknowledged appends wholly present, with the stream version of their
  # last event, by completion.
  defp acked_tops(acked, index) do
    for op <- acked,
        evs = Enum.map(op.event_ids, &Map.get(index, &1)),
        Enum.all?(evs, & &1),
        do: %{op: op, top: evs |> Enum.map(& &1.version) |> Enum.max()}
  end

  defp stream_reads(node, reads, final, latest, tops, kind) do
    tops = Enum.sort_by(tops, & &1.op.completed_at)

    {anomalies, _, _} =
      reads
      |> Enum.sort_by(& &1.invoked_at)
      |> Enum.reduce({[], tops, nil}, fn read, {acc, pending, max} ->
        {done, pending} = Enum.split_while(pending, &(&1.op.completed_at < read.invoked_at))
        max = Enum.reduce(done, max, &if(&2 == nil or &1.top > &2.top, do: &1, else: &2))
        {read_checks(node, read, final, latest, max, kind) ++ acc, pending, max}
      end)

    anomalies
  end

  defp read_checks(node, read, final, latest, max, kind) do
    %{result: {:ok, ids}} = read
    k = length(ids)

    if :lists.sublist(final, k) != ids do
      [
        %{
          kind: :read_not_prefix,
          node: node,
          read: brief(read),
          index: first_difference(ids, final),
          read_events: k,
          stream_events: length(final)
        }
      ]
    else
      future(node, read, k, latest) ++ stale(node, read, ids, k, max, kind)
    end
  end

  # Saw an event whose append was invoked after the read completed.
  defp future(node, read, k, latest) do
    at = if k > 0, do: elem(latest, k - 1)

    if at != nil and read.completed_at != nil and at > read.completed_at,
      do: [%{kind: :future_read, node: node, read: brief(read), events: k}],
      else: []
  end

  # The read misses an append acknowledged before it began (any append
  # for a linearizable read, its client's own for a local one).
  defp stale(node, read, ids, k, %{top: top, op: op}, kind) when top > k do
    seen = MapSet.new(ids)
    missing = Enum.reject(op.event_ids, &(&1 in seen))

    [
      %{
        kind: kind,
        node: node,
        read: brief(read),
        append: brief(op),
        missing: missing,
        read_version: k,
        acked_version: top
      }
    ]
  end

  defp stale(_, _, _, _, _, _), do: []

  # One check per subscription name, over all its subscribers and every
  # time they subscribed again (at least once: from its checkpoint). The
  # order per stream is per subscriber; for a subscription partitioned
  # by stream (partition_by: :stream, shared by several subscribers)
  # across all of them, in the order they recorded the deliveries.
  defp subscription_anomalies(node, state, ops, index) do
    subs = for(%{type: :subscribe} = op <- ops, do: op) |> Enum.uniq_by(& &1.subscription)
    deliveries = ops |> Enum.filter(&(&1.type == :deliver)) |> Enum.group_by(& &1.subscription)

    Enum.flat_map(subs, fn sub ->
      got = deliveries |> Map.get(sub.subscription, []) |> Enum.sort_by(& &1.invoked_at)

      ordered =
        if Map.get(sub, :partition_by) == :stream,
          do: [{"*", got}],
          else: Enum.group_by(got, & &1.client)

      Enum.flat_map(ordered, fn {client, ds} ->
        delivery_anomalies(node, %{sub | client: client}, ds, index)
      end) ++ missed(node, sub, got, state)
    end)
  end

  defp delivery_anomalies(node, sub, got, index) do
    name = %{client: sub.client, subscription: sub.subscription}

    {anomalies, _} =
      Enum.reduce(got, {[], %{}}, fn d, {acc, seen} ->
        stored = Map.get(index, d.event_id)

        delivered = %{
          event_id: d.event_id,
          stream_id: d.stream,
          version: d.version,
          position: d.position
        }

        top = Map.get(seen, d.stream, 0)

        acc =
          cond do
            stored == nil ->
              [
                %{kind: :subscription_phantom, node: node, subscriber: name, delivered: delivered}
                | acc
              ]

            key(stored) != key(delivered) ->
              [
                %{
                  kind: :subscription_mismatch,
                  node: node,
                  subscriber: name,
                  delivered: delivered,
                  stored: stored
                }
                | acc
              ]

            d.version > top + 1 ->
              [
                %{
                  kind: :subscription_gap,
                  node: node,
                  subscriber: name,
                  stream: d.stream,
                  after_version: top,
                  delivered: delivered
                }
                | acc
              ]

            true ->
              acc
          end

        {acc, Map.put(seen, d.stream, max(top, d.version))}
      end)

    Enum.reverse(anomalies)
  end

  # Every event the selector covers, delivered at least once.
  defp missed(node, sub, got, state) do
    wanted =
      case sub.selector do
        {:by_stream, "$all"} -> state.all
        {:by_stream, id} -> Map.get(state.streams, id, [])
        _ -> []
      end

    seen = MapSet.new(got, & &1.event_id)

    case Enum.reject(wanted, &(&1.event_id in seen)) do
      [] ->
        []

      never ->
        [
          %{
            kind: :subscription_missed,
            node: node,
            subscription: sub.subscription,
            missed: length(never),
            first: Enum.take(never, 5)
          }
        ]
    end
  end

  # An operation as an anomaly shows it.
  defp brief(op),
    do:
      Map.take(op, [
        :client,
        :node,
        :type,
        :stream,
        :expected,
        :event_ids,
        :consistency,
        :invoked_at,
        :completed_at,
        :result,
        :outcome
      ])
end
