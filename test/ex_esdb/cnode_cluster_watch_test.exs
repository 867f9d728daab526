defmodule ExESDB.CNodeClusterWatchTest do
  # Writes through the C node backend waiting on a silent leading C node
  # ask whether leadership moved through one watcher per store on this
  # node (ExESDB.CNode.Watcher), which asks each C node of the cluster
  # for its cluster_info at most once per interval, however many writes
  # wait. Before, every waiting write asked every other C node every
  # 50 ms itself: N writes, N pollers. Counted by tracing this VM's sends
  # of {:call, _, _, {:cluster_info}}. Three C nodes, election timeout
  # 500 ms; the leader and the third C node stopped (no quorum: no new
  # leader, so the writes wait their whole timeout).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.{NewEvent, Streams}
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  @writers 24
  @timeout 3_000
  # the backend's interval between asks (ExESDB.Backend.CNode @watch)
  @watch 50

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnwatch")}
  end

  # A long-lived caller: its writes remember the leader that took the
  # last one (the process dictionary), so its next goes straight there.
  defp writer(store) do
    receive do
      {:append, from, stream} ->
        ev = NewEvent.new(event_type: "t", data: 0)
        send(from, {:appended, self(), Streams.append_events(store, stream, :any, [ev])})
        writer(store)
    end
  end

  defp append_from(pid, stream) do
    send(pid, {:append, self(), stream})
    pid
  end

  defp answer(pid, ms) do
    receive do
      {:appended, ^pid, answer} -> answer
    after
      ms -> flunk("no answer from writer #{inspect(pid)} in #{ms} ms")
    end
  end

  # Counts the cluster_info requests this VM sends until told to stop.
  defp counter(n) do
    receive do
      {:trace, _pid, :send, {:call, _, _, {:cluster_info}}, _to} -> counter(n + 1)
      {:count, from} -> send(from, {:count, n})
      _ -> counter(n)
    end
  end

  # The watcher is a help only: it starts after every other child of the
  # store's system, so under :rest_for_one its death restarts nothing
  # else (before it started before ExESDB.Store: a crash of it restarted
  # the store and dropped every subscription of the node).
  test "a watcher that dies is restarted alone", %{dir: dir} do
    cns = CNodeCluster.start(dir)
    [f | _] = cns
    store = :"cnwatch_#{ExESDB.Test.Unique.id()}"
    start_supervised!({ExESDB.System, CNodeCluster.system_opts(store, dir, f, cns)})
    name = ExESDB.CNode.Watcher.name(store)
    watcher = wait_until(fn -> Process.whereis(name) end)
    store_pid = Process.whereis(:"exesdb_store_#{store}")
    subs = Process.whereis(ExESDB.Subscriptions.supervisor(store))
    assert is_pid(store_pid) and is_pid(subs)

    ref = Process.monitor(watcher)
    Process.exit(watcher, :kill)
    assert_receive {:DOWN, ^ref, :process, ^watcher, :killed}, 5_000
    wait_until(fn -> (p = Process.whereis(name)) && p != watcher end)
    assert Process.whereis(:"exesdb_store_#{store}") == store_pid
    assert Process.whereis(ExESDB.Subscriptions.supervisor(store)) == subs
  end

  test "many writes waiting on a stopped leader cause a bounded number of cluster_info asks",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f, g] = cns -- [l]
    store = :"cnwatch_#{ExESDB.Test.Unique.id()}"
    opts = CNodeCluster.system_opts(store, dir, f, cns) ++ [timeout: @timeout]
    start_supervised!({ExESDB.System, opts})

    for cn <- cns -- [f],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    writers = for _ <- 1..@writers, do: spawn_link(fn -> writer(store) end)
    # each one's last write was taken by the leader
    for w <- writers, do: append_from(w, "w")
    for w <- writers, do: assert({:ok, _} = answer(w, 30_000))

    for cn <- [l, g] do
      pause_os_process!(cn.os_pid)
      on_exit(fn -> System.cmd("kill", ["-CONT", "#{cn.os_pid}"]) end)
    end

    counter = spawn_link(fn -> counter(0) end)
    :erlang.trace_pattern(:send, [{[:_, {:call, :_, :_, {:cluster_info}}], [], []}], [])
    :erlang.trace(:all, true, [:send, {:tracer, counter}])

    on_exit(fn ->
      :erlang.trace(:all, false, [:send])
      :erlang.trace_pattern(:send, true, [])
    end)

    t0 = System.monotonic_time(:millisecond)
    for w <- writers, do: append_from(w, "w")
    answers = for w <- writers, do: answer(w, @timeout + 10_000)
    ms = System.monotonic_time(:millisecond) - t0
    :erlang.trace(:all, false, [:send])
    send(counter, {:count, self()})
    assert_receive {:count, n}, 5_000

    # each write was left at the stopped leader: its outcome is unknown
    # (or it never got there: no quorum)
    for a <- answers,
        do: assert(a in [{:error, :outcome_unknown}, {:error, :no_quorum}, {:error, :timeout}])

    # one watcher asks the three C nodes once per interval (a round
    # waits up to an interval for a silent one); before: every waiting
    # write asked the other two every slice, ~#{@writers}x this
    bound = 3 * (div(ms, @watch) + 2)
    assert n <= bound, "#{n} cluster_info asks in #{ms} ms (bound #{bound})"
  end
end
