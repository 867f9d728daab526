defmodule ExESDB.FanoutSchedulingTest do
  # Issue 11: fan-out runs on the emitter's own thread and close marks the
  # store closed before it stops the writer and the emitter, so no process
  # calling the store while 100 subscribers are fanned out to (and some
  # die), or while it closes, holds a normal scheduler for more than 1 ms.
  # Before, close held the store's lock while the writer finished its
  # fan-out, and every call on a normal scheduler waited for it.
  #
  # long_schedule reports name the process that ran long. Other processes
  # (this one, the big appends' Erlang work, subscribers collecting their
  # events) may run long on a loaded machine without the store in the way,
  # so only the callers' and the closer's reports count. Their slots are
  # one call each, but long_schedule counts wall time, so the OS
  # descheduling the VM's thread on a busy machine shows up too (measured
  # at load ~20 on 2 cores: 2-50 ms, in slots that called nothing). So
  # baseline processes run slots of the same shape with no store call in
  # them throughout, and a path report counts only when it ran longer than
  # every baseline slot that ran long in the same run (on an idle machine
  # none does, and the bound is the issue's 1 ms). A NIF slow on every
  # call makes most of the callers' slots long, each by less than a
  # preempted one: so more than half of them long, and in a larger share
  # than the baseline slots, also counts. A run with a report is
  # repeated, and only a report in every run fails the test (a store stall
  # recurs, preemption does not). A subscriber's
  # death runs in its exit, where long_schedule does not look:
  # test/c/test_fanout.c checks that leaving waits for no delivery.
  use ExUnit.Case, async: false

  @subscribers 100
  @batch 5000
  @runs 3
  @baselines 4
  @calls 20

  test "no process on the fan-out or close path runs more than 1 ms" do
    results = Enum.reduce_while(1..@runs, [], &run_until_clean/2)
    assert match?([[] | _], results), "long_schedule on the path in every run: #{inspect(results)}"
  end

  defp run_until_clean(_run, acc) do
    reports = scenario()
    if reports == [], do: {:halt, [[] | acc]}, else: {:cont, [reports | acc]}
  end

  defp scenario do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_fanout_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    {:ok, s} = :ex_esdb.open(dir, %{durability: :nosync})
    me = self()
    events = for _ <- 1..@batch, do: %{event_type: "t", data: :binary.copy(<<1>>, 100)}

    subs = for _ <- 1..@subscribers, do: spawn(fn -> collect(me, s) end)
    for _ <- subs, do: assert_receive({:subscribed, _}, 10_000)
    previous = :erlang.system_monitor(self(), [{:long_schedule, 1}])
    baselines = for _ <- 1..@baselines, do: spawn_link(fn -> baseline(me) end)

    # Fan-out: big appends (made by a process whose own work is not
    # watched) while subscribers die and a caller appends and reads limits.
    fan_caller = spawn_link(fn -> calls(s, me) end)

    for i <- 1..3 do
      {:ok, _} = :ex_esdb.append(s, "a", :any, events)
      Enum.each(Enum.slice(subs, (i - 1) * 10, 10), &Process.exit(&1, :kill))
    end

    assert_receive {:calls_done, ^fan_caller}, 30_000
    survivors = Enum.drop(subs, 30)
    for p <- survivors, do: send(p, {:expect, 3 * @batch})
    for _ <- survivors, do: assert_receive({:collected, _}, 60_000)

    # Close while a last append fans out (a subscriber has its first
    # events, the others wait) and a caller calls in.
    send(hd(survivors), {:tell_next, me})
    spawn(fn -> :ex_esdb.append(s, "a", :any, events) end)
    assert_receive :fanning_out, 30_000
    close_caller = spawn_link(fn -> calls(s, me) end)
    closer = spawn_link(fn -> send(me, {:closed, :ex_esdb.close(s)}) end)
    assert_receive {:closed, :ok}, 30_000
    assert_receive {:calls_done, ^close_caller}, 30_000

    for b <- baselines, do: send(b, :stop)

    baseline_slots =
      for b <- baselines do
        assert_receive {:baseline_done, ^b, n}, 30_000
        n
      end

    restore(previous)
    roles = %{fan_caller => :fan_caller, close_caller => :close_caller, closer => :closer}
    path = Map.keys(roles)
    monitored = for {:monitor, pid, :long_schedule, info} <- flush(), do: {pid, info[:timeout]}
    preempted = Enum.max([0 | for({pid, ms} <- monitored, pid in baselines, do: ms)])

    on_path = for {pid, ms} <- monitored, pid in path, do: {pid, ms}
    path_share = length(on_path) / (2 * @calls + 1)

    baseline_share =
      Enum.count(monitored, fn {pid, _} -> pid in baselines end) / Enum.sum(baseline_slots)

    slow_nif = path_share > 0.5 and path_share > 2 * baseline_share

    reports =
      for {pid, ms} <- on_path,
          slow_nif or ms > preempted,
          do:
            {roles[pid], ms,
             baseline_max: preempted, path_share: path_share, baseline_share: baseline_share}

    for p <- subs, do: Process.exit(p, :kill)
    File.rm_rf!(dir)
    reports
  end

  # A few calls that take the store's lock on a normal scheduler (a small
  # append, limits), each in a slot of its own: between them the process
  # sleeps, so a long slot is a call held up, or the OS preempting it.
  defp calls(s, parent) do
    for _ <- 1..@calls do
      :ex_esdb.limits(s)
      :ex_esdb.append(s, "b", :any, [%{event_type: "t"}])
      Process.sleep(5)
    end

    send(parent, {:calls_done, self()})
  end

  # A slot like a caller's (some work, then a sleep) that calls nothing:
  # when it runs long, the OS descheduled the VM, not the store.
  defp baseline(parent, slots \\ 0) do
    receive do
      :stop -> send(parent, {:baseline_done, self(), slots})
    after
      1 ->
        _ = :lists.sum(:lists.seq(1, 2000))
        baseline(parent, slots + 1)
    end
  end

  defp restore(:undefined), do: :erlang.system_monitor(:undefined)
  defp restore({pid, opts}), do: :erlang.system_monitor(pid, opts)

  # Subscribes, then counts events until told how many to expect; told
  # to, it says when the next events come.
  defp collect(parent, s) do
    {:ok, sub} = :ex_esdb.subscribe(s, {:stream, "a"}, self(), %{credit: :infinity})
    send(parent, {:subscribed, sub})
    count(parent, 0, nil, nil)
  end

  defp count(parent, n, want, tell) do
    receive do
      {:events, evs} ->
        if tell, do: send(tell, :fanning_out)
        counted(parent, n + length(evs), want, nil)

      {:expect, w} ->
        counted(parent, n, w, tell)

      {:tell_next, pid} ->
        count(parent, n, want, pid)

      _ ->
        count(parent, n, want, tell)
    end
  end

  defp counted(parent, n, n, tell) do
    send(parent, {:collected, n})
    count(parent, n, nil, tell)
  end

  defp counted(parent, n, want, tell), do: count(parent, n, want, tell)

  defp flush do
    receive do
      m -> [m | flush()]
    after
      0 -> []
    end
  end
end
