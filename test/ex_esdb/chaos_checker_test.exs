defmodule ExESDB.ChaosCheckerTest do
  # Issue 14: the checker flags each kind of anomaly in a small made-up
  # history and state, and passes the same history when nothing is wrong.
  use ExUnit.Case, async: true

  alias ExESDB.Chaos.{Checker, History, JSON}

  defp op(type, at, done, fields) do
    result = Map.get(fields, :result, :ok)

    Map.merge(
      %{
        type: type,
        client: "c1",
        node: :n1,
        invoked_at: at,
        completed_at: done,
        result: result,
        outcome: History.outcome(result)
      },
      fields
    )
  end

  defp append(stream, expected, ids, at, done, result),
    do: op(:append, at, done, %{stream: stream, expected: expected, event_ids: ids, result: result})

  defp read(stream, ids, at, done, consistency \\ :linearizable),
    do: op(:read, at, done, %{stream: stream, consistency: consistency, result: {:ok, ids}})

  defp deliver(id, stream, version, position, at),
    do:
      op(:deliver, at, at, %{
        client: "sub",
        subscription: "s",
        event_id: id,
        stream: stream,
        version: version,
        position: position
      })

  # [{id, stream, version, position}] in $all order -> a replica's state
  defp state(events) do
    all = for {id, s, v, p} <- events, do: %{event_id: id, stream_id: s, version: v, position: p}

    streams =
      all
      |> Enum.group_by(& &1.stream_id)
      |> Map.new(fn {s, evs} -> {s, Enum.sort_by(evs, & &1.version)} end)

    %{all: all, streams: streams}
  end

  @events [
    {"a1", "a", 1, 1},
    {"a2", "a", 2, 2},
    {"b1", "b", 1, 3},
    {"a3", "a", 3, 4},
    {"b2", "b", 2, 5},
    {"b3", "b", 3, 6}
  ]

  # a1,a2 acked; b1 acked; a3 acked; x1 refused; b2,b3 outcome unknown
  # (present); a linearizable read after a3; a subscriber that saw all.
  defp history(events \\ @events) do
    [
      append("a", :no_stream, ["a1", "a2"], 0, 10, {:ok, 2, 1}),
      append("b", :any, ["b1"], 20, 30, {:ok, 1}),
      append("a", 2, ["a3"], 40, 50, {:ok, 3, 4}),
      append("a", :no_stream, ["x1"], 45, 55, {:error, :wrong_expected_version}),
      append("b", :stream_exists, ["b2", "b3"], 60, 70, {:error, :outcome_unknown}),
      read("a", ["a1", "a2", "a3"], 52, 53),
      op(:subscribe, 1, 2, %{client: "sub", subscription: "s", selector: {:by_stream, "$all"}})
    ] ++ for({id, s, v, p} <- events, do: deliver(id, s, v, p, 100 + p))
  end

  defp check(ops \\ history(), events \\ @events, other \\ nil),
    do: Checker.check(ops, %{n1: state(events), n2: state(other || events)})

  defp kinds(verdict), do: verdict.counts |> Map.keys() |> Enum.sort()

  defp replace(ops, n, fun), do: List.update_at(ops, n, fun)

  test "a correct history passes" do
    v = check()
    assert v.valid?, inspect(v.anomalies, pretty: true)
    assert %{appends: 5, acknowledged: 3, failed: 1, unknown: 1, lost: 0, duplicates: 0} = v.stats
    assert v.stats.deliveries == 6
  end

  test "an outcome-unknown append may be absent; a failed retry of an acked append is no anomaly" do
    four = Enum.take(@events, 4)
    assert check(history(four), four).valid?
    retry = append("a", :no_stream, ["a1", "a2"], 11, 12, {:error, :wrong_expected_version})
    v = check(history(four) ++ [retry], four)
    assert v.valid?, inspect(v.anomalies)
  end

  test "an incomplete operation counts as outcome unknown" do
    four = Enum.take(@events, 4)
    ops = replace(history(four), 4, &%{&1 | completed_at: nil, result: nil, outcome: :unknown})
    assert check(ops, four).valid?
  end

  test "a lost acknowledged event" do
    lost = List.delete_at(@events, 3)
    v = check(history(), lost, lost)
    refute v.valid?
    assert :lost_event in kinds(v)

    assert [%{op: %{event_ids: ["a3"]}, missing: ["a3"]} | _] =
             Enum.filter(v.anomalies, &(&1.kind == :lost_event))

    assert v.stats.lost == 2
  end

  test "a duplicated event id" do
    dup = @events ++ [{"a1", "a", 4, 7}]
    v = check(history(), dup, dup)
    assert :duplicate_event in kinds(v)

    assert %{event_id: "a1", events: [_, _]} =
             Enum.find(v.anomalies, &(&1.kind == :duplicate_event))
  end

  test "a reordered history: an append acked before another was invoked is after it" do
    # a3's append completes (15) before b1's is invoked (20), but a3 is at 4, b1 at 3
    ops = replace(history(), 2, &%{&1 | invoked_at: 12, completed_at: 15})
    v = check(ops)
    assert kinds(v) == [:real_time_order]

    assert [%{node: :n1, earlier: %{event_ids: ["a3"]}, later: %{event_ids: ["b1"]}}, %{node: :n2}] =
             v.anomalies
  end

  test "a retry acknowledged late is ordered by its first attempt" do
    # b2,b3's first attempt (unknown) applied them; a retry acked after a
    # later append answers the original positions: no anomaly
    retry = append("b", :stream_exists, ["b2", "b3"], 90, 95, {:ok, 3, 5})
    later = append("c", :any, ["c1"], 72, 80, {:ok, 1, 7})
    events = @events ++ [{"c1", "c", 1, 7}]
    v = check(history(events) ++ [later, retry], events)
    assert v.valid?, inspect(v.anomalies, pretty: true)
  end

  test "a gap in $all positions" do
    gap = List.replace_at(@events, 5, {"b3", "b", 3, 7})
    v = check(history(), gap, gap)
    assert :position_gap in kinds(v)
    assert %{expected: 6, found: 7} = Enum.find(v.anomalies, &(&1.kind == :position_gap))
  end

  test "a gap in a stream's versions" do
    gap = List.replace_at(@events, 5, {"b3", "b", 4, 6})
    assert :version_gap in kinds(check(history(), gap, gap))
  end

  test "replicas that differ" do
    no_subscriber = Enum.reject(history(), &(&1.type in [:subscribe, :deliver]))
    v = check(no_subscriber, @events, Enum.take(@events, 4))
    assert kinds(v) == [:replica_divergence]
    assert [%{node: :n2, reference: :n1, position: 5, events: 4, reference_events: 6}] = v.anomalies
  end

  test "a stream read that disagrees with $all" do
    s = state(@events)
    s = put_in(s.streams["a"], Enum.reverse(s.streams["a"]))
    v = Checker.check(history(), %{n1: s})
    assert :stream_order_mismatch in kinds(v)
  end

  test "a non-atomic append: part of it present, or not contiguous" do
    part = Enum.take(@events, 5)
    v = check(history(part), part, part)
    assert kinds(v) == [:non_atomic_append]
    assert [%{op: %{event_ids: ["b2", "b3"]}, missing: ["b3"]} | _] = v.anomalies

    # a1 and a2 split by b1
    split = [
      {"a1", "a", 1, 1},
      {"b1", "b", 1, 2},
      {"a2", "a", 2, 3},
      {"a3", "a", 3, 4},
      {"b2", "b", 2, 5},
      {"b3", "b", 3, 6}
    ]

    assert :non_atomic_append in kinds(check(history(), split, split))
  end

  test "an event of a failed append present" do
    extra = @events ++ [{"x1", "a", 4, 7}]
    v = check(history(), extra, extra)
    assert :failed_append_present in kinds(v)

    assert %{op: %{event_ids: ["x1"]}} =
             Enum.find(v.anomalies, &(&1.kind == :failed_append_present))
  end

  test "an event no append wrote" do
    extra = @events ++ [{"z1", "z", 1, 7}]
    assert :invented_event in kinds(check(history(), extra, extra))
  end

  test "an acknowledgement that does not say where the events are" do
    ops = replace(history(), 2, &%{&1 | result: {:ok, 3, 5}})
    assert kinds(check(ops)) == [:wrong_ack]
    ops = replace(history(), 1, &%{&1 | result: {:ok, 2}})
    assert kinds(check(ops)) == [:wrong_ack]
  end

  test "an expected version not honoured" do
    ops = replace(history(), 2, &%{&1 | expected: 1})
    assert kinds(check(ops)) == [:expected_version_violated]
    ops = replace(history(), 1, &%{&1 | expected: :stream_exists})
    assert kinds(check(ops)) == [:expected_version_violated]
  end

  test "a stale linearizable read; a local one may lag, but not behind its own writes" do
    stale = replace(history(), 5, &%{&1 | result: {:ok, ["a1", "a2"]}})
    v = check(stale)
    assert kinds(v) == [:stale_read]
    assert [%{missing: ["a3"], append: %{event_ids: ["a3"]}} | _] = v.anomalies
    # c3 read on n1 and a3 was c1's append
    assert check(replace(stale, 5, &%{&1 | consistency: :local, client: "c3"})).valid?
    assert check(replace(stale, 5, &%{&1 | consistency: :local, node: :n2})).valid?
    own = replace(stale, 5, &%{&1 | consistency: :local})
    assert kinds(check(own)) == [:read_your_writes]
  end

  test "a read that saw the future, or an order that is not the stream's" do
    early = replace(history(), 5, &%{&1 | invoked_at: 5, completed_at: 8})
    assert :future_read in kinds(check(early))
    wrong = replace(history(), 5, &%{&1 | result: {:ok, ["a2", "a1"]}})
    assert :read_not_prefix in kinds(check(wrong))
  end

  test "a subscription gap, a missed event, a phantom delivery" do
    # b1 (b's version 1) is never delivered: b2 comes after version 0
    ops = Enum.reject(history(), &(&1.type == :deliver and &1.event_id == "b1"))
    v = check(ops)
    assert kinds(v) == [:subscription_gap, :subscription_missed]
    assert [%{stream: "b", after_version: 0, delivered: %{event_id: "b2"}} | _] = v.anomalies

    # b1 delivered late: out of order per stream, though nothing is missed
    late = ops ++ [deliver("b1", "b", 1, 3, 200)]
    assert kinds(check(late)) == [:subscription_gap]

    # a redelivery from an earlier point (at least once) is fine
    again = history() ++ [deliver("a1", "a", 1, 1, 200), deliver("a2", "a", 2, 2, 201)]
    assert check(again).valid?

    phantom = history() ++ [deliver("x1", "a", 4, 7, 200)]
    assert kinds(check(phantom)) == [:subscription_phantom]
  end

  # a subscription shared by two subscribers, its events partitioned by
  # stream (partition_by): each stream's events in order across them
  defp shared(deliveries) do
    sub = fn c ->
      op(:subscribe, 1, 2, %{
        client: c,
        subscription: "p",
        selector: {:by_stream, "$all"},
        partition_by: :stream
      })
    end

    Enum.reject(history(), &(&1.type in [:deliver, :subscribe])) ++
      [sub.("pa"), sub.("pb")] ++
      for {c, id, at} <- deliveries do
        {^id, s, v, p} = List.keyfind(@events, id, 0)
        %{deliver(id, s, v, p, at) | client: c, subscription: "p"}
      end
  end

  test "a shared subscription partitioned by stream: in order per partition across its subscribers" do
    # a on pa, b on pb; then pa left and pb took a3 (after a2): correct
    ok =
      [{"pa", "a1", 101}, {"pb", "b1", 102}, {"pa", "a2", 103}, {"pb", "b2", 104}] ++
        [{"pb", "b3", 105}, {"pb", "a3", 106}]

    v = check(shared(ok))
    assert v.valid?, inspect(v.anomalies, pretty: true)

    # a3 on pb before a2 on pa: reordered across the subscribers
    reordered = List.replace_at(ok, 5, {"pb", "a3", 102})
    assert kinds(check(shared(reordered))) == [:subscription_gap]

    # a2 delivered to neither: skipped
    skipped = List.delete_at(ok, 2)
    assert kinds(check(shared(skipped))) == [:subscription_gap, :subscription_missed]
  end

  test "a subscribed again (a resubscription) is one subscription: missed and gaps over all of it" do
    again =
      history() ++
        [
          op(:subscribe, 150, 151, %{
            client: "sub",
            subscription: "s",
            selector: {:by_stream, "$all"}
          })
        ]

    assert check(again).valid?
    ops = Enum.reject(again, &(&1.type == :deliver and &1.event_id == "b3"))
    # (once per replica)
    assert check(ops).counts == %{subscription_missed: 2}
  end

  test "a linearizable (barrier) read on another node that misses an acknowledged append is stale" do
    stale = replace(history(), 5, &%{&1 | result: {:ok, ["a1", "a2"]}, node: :n2, client: "c3"})
    assert kinds(check(stale)) == [:stale_read]
    # the same read invoked before a3 was acknowledged may miss it
    assert check(replace(stale, 5, &%{&1 | invoked_at: 45})).valid?
  end

  test "the verdict and the history encode as JSON" do
    v = check(history(), Enum.take(@events, 5))
    json = JSON.encode(v)
    assert json =~ ~s("valid?":false)
    assert json =~ ~s("kind":"non_atomic_append")

    assert JSON.encode(%{"a\"b\n" => [1, 2.5, nil, {:ok, "é"}]}) ==
             ~s({"a\\"b\\n":[1,2.5,null,["ok","é"]]})
  end
end
