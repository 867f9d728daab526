defmodule ExESDB.ChaosFaultsCheckTest do
  # Issue 14: the fault checks and figures (ExESDB.Chaos.Faults) on
  # written histories: an append acknowledged through a cut-off node
  # while the cut was in place is flagged, one completed after the heal
  # or through the majority is not; the time until writes again and the
  # longest unavailability are read off the acknowledgements.
  use ExUnit.Case, async: true

  alias ExESDB.Chaos.Faults

  # times in ms, as native units
  defp t(ms), do: System.convert_time_unit(ms, :millisecond, :native)

  defp nemesis(phase, at, fault \\ :isolate_leader),
    do: %{
      type: :nemesis,
      fault: fault,
      phase: phase,
      nodes: [:a],
      minority: if(fault == :isolate_leader, do: [:a]),
      invoked_at: t(at),
      completed_at: t(at),
      outcome: :ok
    }

  defp append(node, from, to, id, outcome \\ :ok),
    do: %{
      type: :append,
      client: "c",
      node: node,
      stream: "s",
      expected: :any,
      event_ids: [id],
      result: if(outcome == :ok, do: {:ok, 1}, else: {:error, :outcome_unknown}),
      outcome: outcome,
      invoked_at: t(from),
      completed_at: t(to)
    }

  defp history(ops), do: Enum.sort_by(ops, & &1.invoked_at)

  test "an append acknowledged through the cut-off node during the cut is flagged" do
    ops =
      history([
        append(:a, 0, 10, "before"),
        nemesis(:start, 100),
        append(:a, 150, 300, "minority"),
        append(:a, 200, 1_200, "after heal"),
        append(:b, 150, 700, "majority"),
        nemesis(:heal, 1_000),
        nemesis(:recovered, 1_500)
      ])

    assert [%{kind: :minority_ack, op: %{event_ids: ["minority"]}}] = Faults.check(ops)
    assert Faults.check(Enum.reject(ops, &(&1[:event_ids] == ["minority"]))) == []
  end

  test "time until writes again and the longest unavailability" do
    ops =
      history([
        append(:b, 0, 50, "e1"),
        nemesis(:start, 100, :kill_leader),
        append(:b, 90, 120, "e2", :unknown),
        append(:b, 150, 900, "e3"),
        append(:c, 300, 950, "e4"),
        nemesis(:elected, 700, :kill_leader),
        nemesis(:heal, 1_000, :kill_leader),
        append(:c, 1_100, 1_200, "e5"),
        nemesis(:recovered, 1_500, :kill_leader),
        append(:c, 1_600, 1_700, "e6")
      ])

    %{kill_leader: f} = Faults.figures(ops, %{anomalies: []}, 500)
    assert f.cycles == 1 and f.acknowledged == 4 and f.operations == 4
    # from the fault (100) to the first acknowledgement of a later append (900)
    assert f.writes_again_p50_ms == 800.0 and f.writes_again_p50_et == 1.6
    # from the last acknowledgement before (50) to the next (900)
    assert f.unavailable_max_ms == 850.0
    # from the fault until the others agreed on a leader
    assert f.leader_again_p50_ms == 600.0 and f.leader_again_max_et == 1.2
    assert f.lost == 0 and f.duplicated == 0

    # no acknowledgement before the fault: unavailable from the fault on
    first = Enum.reject(ops, &(&1[:event_ids] == ["e1"]))

    assert %{kill_leader: %{unavailable_max_ms: 800.0}} =
             Faults.figures(first, %{anomalies: []}, 500)

    # times count from the fault in place (its command returned at 160):
    # appends invoked before that (e0, e3) the old leader could still take
    placed = Enum.map(ops, &if(&1[:phase] == :start, do: %{&1 | completed_at: t(160)}, else: &1))
    early = history([append(:b, 120, 130, "e0") | placed])

    assert %{kill_leader: %{writes_again_p50_ms: 790.0, leader_again_p50_ms: 540.0}} =
             Faults.figures(early, %{anomalies: []}, 500)

    lost = %{anomalies: [%{kind: :lost_event, missing: ["e4"]}]}
    assert %{kill_leader: %{lost: 1}} = Faults.figures(ops, lost, 500)
  end
end
