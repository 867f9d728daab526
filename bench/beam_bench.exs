# BEAM-level benchmarks through the ExESDB Elixir API; JSON lines like the
# C bench (c_src/bench). Usage: mix run bench/beam_bench.exs [DIR]
# ESDB_BENCH_SECONDS sets time-bounded runs (default 3), ESDB_BENCH_ONLY a
# comma-separated subset of names. When
# ESDB_C_BENCH_JSON names the C bench's output of the same `make bench`,
# each line carries its ratio to the C figure.

Code.require_file("json_line.exs", __DIR__)

defmodule BeamBench do
  alias ExESDB.{NewEvent, Streams}

  @data :binary.copy(<<0xA5>>, 100)
  @meta :binary.copy(<<0x5A>>, 32)

  def main(dir) do
    seconds = String.to_integer(System.get_env("ESDB_BENCH_SECONDS", "3"))
    c = c_figures(System.get_env("ESDB_C_BENCH_JSON"))

    run(dir, "beam_append_single_durable", fn store ->
      timed(store, 1, 1, seconds) |> line("append_single_durable", c)
    end)

    run(dir, "beam_append_concurrent64_durable", fn store ->
      timed(store, 64, 1, seconds) |> line("append_concurrent64_durable", c)
    end)

    run(dir, "beam_append_batch100_one_stream_durable", fn store ->
      timed(store, 1, 100, seconds) |> line("append_batch100_one_stream_durable", c)
    end)

    # Reads into %ExESDB.EventRecord{} with decoded payloads (the target:
    # ratio_to_c >= 0.6); the _raw lines read with decode: false and do
    # not count.
    for {name, source, c_name} <- [
          {"beam_read_stream_forward", :stream, "read_stream_forward"},
          {"beam_read_all_forward", :all, "read_all_forward"}
        ],
        {suffix, decode} <- [{"", true}, {"_raw", false}] do
      run(dir, name <> suffix, fn store ->
        {fields, base} = read(store, source, decode) |> line(c_name, c)
        {fields, if(decode and base != [], do: base ++ [{"target_ratio_to_c", 0.6}], else: base)}
      end)
    end

    run(dir, "sub_latency_transient", fn store -> {sub_latency(store, :transient), []} end)
    run(dir, "sub_latency_persistent", fn store -> {sub_latency(store, :persistent), []} end)
    run(dir, "sub_fanout_10", fn store -> {fanout(store, 10, 1_000_000, :off_heap), []} end)
    run(dir, "sub_ack_fanout_100", fn store -> {ack_fanout(store, 100, 5000), []} end)

    run(dir, "sub_fanout_10_on_heap", fn store ->
      {fanout(store, 10, 1_000_000, :on_heap), []}
    end)

    run(dir, "sub_catchup_origin", fn store -> {catchup(store, 1_000_000), []} end)
  end

  # ---- subscriptions ------------------------------------------------

  alias ExESDB.Subscriptions

  # Durable single appends, one at a time; the subscriber stamps each
  # event's arrival. Latency (p50_us, p99_us) is from the append call to
  # the arrival: delivery follows the acknowledgement, from the emitter's
  # thread. after_ack_*: from the acknowledgement to the arrival (0 when
  # the event came first).
  defp sub_latency(store, kind) do
    bench = self()

    sub =
      spawn_link(fn ->
        {:ok, sid} =
          case kind do
            :transient -> Subscriptions.subscribe(store, {:by_stream, "lat"})
            :persistent -> Subscriptions.subscribe_to(store, "lat", {:by_stream, "lat"})
          end

        latency_loop(store, sid, bench)
      end)

    Process.sleep(100)
    n = 2000

    samples =
      for _ <- 1..n do
        t0 = System.monotonic_time(:microsecond)
        {:ok, v} = Streams.append_events(store, "lat", :any, events(1))
        t1 = System.monotonic_time(:microsecond)

        receive do
          {:arrived, ^v, t2} -> {max(t2 - t1, 0), t2 - t0}
        end
      end

    Process.unlink(sub)
    Process.exit(sub, :kill)
    after_ack = Enum.sort(Enum.map(samples, &elem(&1, 0)))
    from_call = Enum.sort(Enum.map(samples, &elem(&1, 1)))

    [
      {"p50_us", pct(from_call, 50)},
      {"p99_us", pct(from_call, 99)},
      {"after_ack_p50_us", pct(after_ack, 50)},
      {"after_ack_p99_us", pct(after_ack, 99)},
      {"n", n}
    ]
  end

  defp latency_loop(store, sid, bench) do
    receive do
      {:events, evs} ->
        t = System.monotonic_time(:microsecond)
        for e <- evs, do: send(bench, {:arrived, e.event_number, t})
        if is_pid(sid), do: Subscriptions.ack_event(store, sid, List.last(evs))
        latency_loop(store, sid, bench)

      _ ->
        latency_loop(store, sid, bench)
    end
  end

  defp pct(sorted, p), do: Enum.at(sorted, min(length(sorted) - 1, div(length(sorted) * p, 100)))

  # `subs` transient $all subscribers counting; `total` events appended in
  # batches of 1,000 by 4 writers; events delivered per second in all.
  # Subscribers keep their message queue off heap, as the Subscriptions
  # doc advises; the _on_heap run shows the VM's default.
  defp fanout(store, subs, total, queue) do
    bench = self()

    for _ <- 1..subs do
      spawn_link(fn ->
        Process.flag(:message_queue_data, queue)
        {:ok, _} = Subscriptions.subscribe(store, {:by_stream, "$all"}, self(), credit: :infinity)
        send(bench, :ready)
        send(bench, {:received, count_to(total, 0)})
      end)
    end

    for _ <- 1..subs, do: receive(do: (:ready -> :ok))
    t0 = System.monotonic_time(:microsecond)

    1..4
    |> Enum.map(fn w ->
      Task.async(fn ->
        for _ <- 1..div(total, 4000),
            do: {:ok, _} = Streams.append_events(store, "f#{w}", :any, events(1000))
      end)
    end)
    |> Enum.each(&Task.await(&1, :infinity))

    got = for _ <- 1..subs, do: receive(do: ({:received, got} -> got))
    secs = (System.monotonic_time(:microsecond) - t0) / 1.0e6
    overflowed = Enum.count(got, &match?({:overflow, _}, &1))
    delivered = Enum.sum(Enum.map(got, fn {_, n} -> n end))

    [
      {"events_per_s", Float.round(delivered / secs, 1)},
      # subscriptions the store ended with subscription_overflow (its
      # fan-out queue full: the machine too slow for the writers); their
      # events up to then are counted
      {"overflowed", overflowed},
      {"subscribers", subs},
      {"message_queue_data", Atom.to_string(queue)},
      {"events", total},
      {"seconds", Float.round(secs, 3)}
    ]
  end

  # Durable appends of `batch` events: median time to the acknowledgement
  # with no subscriber and with `subs` transient $all subscribers, in the
  # same run (alone before and after, as the store grows). The fan-out
  # runs after the ack, on the emitter's thread: target ack_ratio <= 1.2.
  # Each append waits for the last subscriber to have everything before
  # the next (all_delivered_p50_us). The appending process runs at high
  # priority, so that the figure is the store's answer rather than this
  # process's turn behind 100 subscribers busy with their mailboxes.
  defp ack_fanout(store, subs, batch) do
    Process.flag(:priority, :high)
    evs = events(batch)
    rounds = 15
    before = for _ <- 1..rounds, do: ack_time(store, evs)
    bench = self()

    pids =
      for _ <- 1..subs do
        spawn_link(fn ->
          Process.flag(:message_queue_data, :off_heap)
          {:ok, _} = Subscriptions.subscribe(store, {:by_stream, "$all"}, self(), credit: :infinity)
          send(bench, :ready)
          count_rounds(bench, batch, 0)
        end)
      end

    for _ <- pids, do: receive(do: (:ready -> :ok))

    {with_subs, delivered} =
      Enum.unzip(
        for _ <- 1..rounds do
          t0 = System.monotonic_time(:microsecond)
          ack = ack_time(store, evs)
          for _ <- pids, do: receive(do: (:round -> :ok))
          {ack, System.monotonic_time(:microsecond) - t0}
        end
      )

    Enum.each(pids, &(Process.unlink(&1) && Process.exit(&1, :kill)))
    after_ = for _ <- 1..rounds, do: ack_time(store, evs)
    Process.flag(:priority, :normal)
    a = median(before ++ after_)
    w = median(with_subs)

    [
      {"ack_p50_us", w},
      {"ack_alone_p50_us", a},
      {"ack_ratio", Float.round(w / a, 3)},
      {"target_ack_ratio", 1.2},
      {"all_delivered_p50_us", median(delivered)},
      {"subscribers", subs},
      {"batch", batch},
      {"rounds", rounds}
    ]
  end

  defp ack_time(store, evs) do
    t = System.monotonic_time(:microsecond)
    {:ok, _} = Streams.append_events(store, "ack", :any, evs)
    System.monotonic_time(:microsecond) - t
  end

  defp median(xs), do: Enum.at(Enum.sort(xs), div(length(xs), 2))

  defp count_rounds(bench, batch, n) do
    receive do
      {:events, evs} ->
        n = n + length(evs)

        if n >= batch do
          send(bench, :round)
          count_rounds(bench, batch, n - batch)
        else
          count_rounds(bench, batch, n)
        end
    end
  end

  # {:all, n} once total events came, {:overflow, n} when the store ended
  # the subscription first (an overflow ends it: nothing more comes).
  defp count_to(total, n) when n >= total, do: {:all, n}

  defp count_to(total, n) do
    receive do
      {:events, evs} -> count_to(total, n + length(evs))
      {:subscription_overflow, _sub, _position} -> {:overflow, n}
    end
  end

  # A persistent subscription from :origin over `total` stored events; the
  # subscriber (off heap, as advised) acks each batch it gets. A catch-up
  # has two stages, measured alone in the same run for scale: reading the
  # events into records in one process (read_only), and handing already
  # built records to a subscriber that acks each message, in messages of
  # 250 with at most 10,000 events unacked, as the subscription does
  # (delivery_only). Target: events_per_s >= 0.8 x read_only_events_per_s.
  # On a shared machine the rate moves from one second to the next, so
  # catch-ups (each by a new subscription) and read-only passes alternate,
  # `rounds` times: the figures are medians, ratio_to_read_only the median
  # of each round's ratio (its catch-up over the read-only pass before it).
  # cpu_ratio_to_read_only: the same from the VM's CPU time per event
  # (vm_cpu_ns/0), which the waits for a core on a shared machine do not
  # move.
  defp catchup(store, total) do
    for _ <- 1..div(total, 1000),
        do: {:ok, _} = Streams.append_events(store, "c", :any, events(1000))

    rounds = 3

    {reads, catchups} =
      Enum.unzip(for r <- 1..rounds, do: {read_only(store, total), catchup_round(store, total, r)})

    ratios = Enum.zip_with(catchups, reads, fn {c, _}, {r, _} -> c / r end)
    cpu_ratios = Enum.zip_with(catchups, reads, fn {_, c}, {_, r} -> r / c end)
    {catchups, reads} = {Enum.map(catchups, &elem(&1, 0)), Enum.map(reads, &elem(&1, 0))}

    [
      {"events_per_s", Float.round(median(catchups), 1)},
      {"read_only_events_per_s", Float.round(median(reads), 1)},
      {"ratio_to_read_only", Float.round(median(ratios), 3)},
      {"target_ratio_to_read_only", 0.8},
      {"ratio_min", Float.round(Enum.min(ratios), 3)},
      {"ratio_max", Float.round(Enum.max(ratios), 3)},
      {"cpu_ratio_to_read_only", Float.round(median(cpu_ratios), 3)},
      {"delivery_only_events_per_s", delivery_only(store, total)},
      {"events", total},
      {"rounds", rounds},
      {"stat", "median"}
    ]
  end

  # {events/s, VM CPU ns per event}
  defp catchup_round(store, total, round) do
    bench = self()
    t0 = System.monotonic_time(:microsecond)
    c0 = vm_cpu_ns()

    spawn_link(fn ->
      Process.flag(:message_queue_data, :off_heap)
      opts = [buffer_size: 10_000]
      name = "catchup#{round}"
      {:ok, sub} = Subscriptions.subscribe_to(store, name, {:by_stream, "$all"}, self(), opts)
      ack_until(store, sub, total, 0)
      send(bench, :caught_up)
    end)

    receive(do: (:caught_up -> :ok))
    cpu = (vm_cpu_ns() - c0) / total
    {total / ((System.monotonic_time(:microsecond) - t0) / 1.0e6), cpu}
  end

  # {events/s, VM CPU ns per event}
  defp read_only(store, total) do
    t0 = System.monotonic_time(:microsecond)
    c0 = vm_cpu_ns()
    {:ok, all} = Streams.all_forward(store, 1, 1000)
    ^total = Enum.reduce(all, 0, fn _, n -> n + 1 end)
    cpu = (vm_cpu_ns() - c0) / total
    {total / ((System.monotonic_time(:microsecond) - t0) / 1.0e6), cpu}
  end

  defp delivery_only(store, total) do
    {:ok, batch} = Streams.get_all_events(store, 1, 250)
    bench = self()

    sub =
      :erlang.spawn_opt(
        fn -> ack_batches(bench, total, 0) end,
        [:link, message_queue_data: :off_heap]
      )

    t0 = System.monotonic_time(:microsecond)
    send_batches(sub, batch, div(total, 250), 0)
    Float.round(total / ((System.monotonic_time(:microsecond) - t0) / 1.0e6), 1)
  end

  defp send_batches(_sub, _batch, 0, _unacked), do: receive(do: (:all_acked -> :ok))

  defp send_batches(sub, batch, left, unacked) when unacked >= 40 do
    receive do
      :ack -> send_batches(sub, batch, left, unacked - 1)
    end
  end

  defp send_batches(sub, batch, left, unacked) do
    send(sub, {:events, batch})
    send_batches(sub, batch, left - 1, unacked + 1)
  end

  defp ack_batches(bench, total, n) when n >= total, do: send(bench, :all_acked)

  defp ack_batches(bench, total, n) do
    receive do
      {:events, evs} ->
        send(bench, :ack)
        ack_batches(bench, total, n + length(evs))
    end
  end

  defp ack_until(_store, _sub, total, n) when n >= total, do: :ok

  defp ack_until(store, sub, total, n) do
    receive do
      {:events, evs} ->
        Subscriptions.ack_event(store, sub, List.last(evs))
        ack_until(store, sub, total, n + length(evs))

      {:subscribed, _} ->
        ack_until(store, sub, total, n)
    end
  end

  defp run(dir, name, fun) do
    only = System.get_env("ESDB_BENCH_ONLY", "")
    if only == "" or name in String.split(only, ","), do: do_run(dir, name, fun)
  end

  defp do_run(dir, name, fun) do
    # Let earlier runs' writeback finish (the C bench writes a 2 GB store
    # last), as the C bench does before each of its runs.
    System.cmd("sync", [])
    store = String.to_atom(name)
    path = Path.join(dir, name)
    File.rm_rf!(path)
    {:ok, sup} = ExESDB.System.start_link(store_id: store, data_dir: dir, map_size: 1_073_741_824)
    IO.puts(:stderr, "[beam_bench] #{name}")
    {fields, base} = fun.(store)
    IO.puts(BenchJson.line([{"bench", name} | fields] ++ base))
    Supervisor.stop(sup)
    File.rm_rf!(path)
  end

  defp events(n),
    do: for(_ <- 1..n, do: %NewEvent{event_type: "bench_event", data: @data, metadata: @meta})

  # `procs` processes, each appending `batch` events at a time to its own
  # stream with exact expected versions, for `seconds`.
  defp timed(store, procs, batch, seconds) do
    parent = self()
    deadline = System.monotonic_time(:millisecond) + seconds * 1000
    t0 = System.monotonic_time(:microsecond)

    for p <- 1..procs do
      spawn_link(fn -> send(parent, {:done, writer(store, "w-#{p}", batch, deadline, 0, [])}) end)
    end

    lats =
      for _ <- 1..procs, reduce: [] do
        acc ->
          receive do
            {:done, l} -> l ++ acc
          end
      end

    secs = (System.monotonic_time(:microsecond) - t0) / 1.0e6
    sorted = Enum.sort(lats)
    n = length(sorted)

    [
      {"events_per_s", Float.round(n * batch / secs, 1)},
      {"p50_us", Enum.at(sorted, div(n, 2))},
      {"p99_us", Enum.at(sorted, min(n - 1, div(n * 99, 100)))},
      {"processes", procs},
      {"batch", batch}
    ]
  end

  defp writer(store, stream, batch, deadline, version, lats) do
    if System.monotonic_time(:millisecond) >= deadline do
      lats
    else
      evs = events(batch)
      t = System.monotonic_time(:microsecond)
      {:ok, v} = Streams.append_events(store, stream, version, evs)
      lat = System.monotonic_time(:microsecond) - t
      writer(store, stream, batch, deadline, v, [lat | lats])
    end
  end

  # 100,000 events read forward in pages of 1,000 into
  # %ExESDB.EventRecord{} structs, as the C bench's read_* runs: one
  # stream, or $all written as 100 appends of 1,000 to 100 streams;
  # median of 5 passes after an untimed one. cpu_ns_per_event: CPU time
  # of the whole VM per event (vm_cpu_ns/0), against the C read's thread
  # CPU time (cpu_ratio_to_c): on a shared machine the wall clock also
  # counts each thread's waits for a core.
  defp read(store, source, decode) do
    Enum.each(1..100, fn i ->
      stream = if source == :all, do: "read-#{rem(i, 100)}", else: "long"
      {:ok, _} = Streams.append_events(store, stream, :any, events(1000))
    end)

    passes =
      for _ <- 1..6 do
        t = System.monotonic_time(:microsecond)
        c = vm_cpu_ns()

        {:ok, s} =
          if source == :all,
            do: Streams.all_forward(store, 1, 1000, decode: decode),
            else: Streams.stream_forward(store, "long", 1, 1000, decode: decode)

        100_000 = Enum.reduce(s, 0, fn %ExESDB.EventRecord{}, n -> n + 1 end)
        cpu = (vm_cpu_ns() - c) / 100_000
        {100_000 / ((System.monotonic_time(:microsecond) - t) / 1.0e6), cpu}
      end

    sorted = passes |> tl() |> Enum.map(&elem(&1, 0)) |> Enum.sort()

    [
      {"events_per_s", Float.round(Enum.at(sorted, 2), 1)},
      {"stat", "median"},
      {"best_events_per_s", Float.round(List.last(sorted), 1)},
      {"cpu_ns_per_event", Float.round(median(passes |> tl() |> Enum.map(&elem(&1, 1))), 1)},
      {"decoded", decode},
      {"events", 100_000},
      {"page", 1000}
    ]
  end

  # CPU time of every thread of the VM, in ns (:runtime counts ms).
  # Spinning schedulers count too unless the VM runs with
  # ERL_FLAGS="+sbwt none +sbwtdcpu none +sbwtdio none".
  defp vm_cpu_ns, do: elem(:erlang.statistics(:runtime), 0) * 1_000_000

  # Ratio fields against the C bench of the same run, when given.
  defp line(fields, c_name, c) do
    base =
      case Map.get(c, c_name) do
        nil ->
          []

        cf ->
          ratio = [{"ratio_to_c", Float.round(kv(fields, "events_per_s") / cf["events_per_s"], 3)}]

          ratio =
            if cf["cpu_ns_per_event"] && (kv(fields, "cpu_ns_per_event") || 0) > 0,
              do:
                ratio ++
                  [
                    {"cpu_ratio_to_c",
                     Float.round(cf["cpu_ns_per_event"] / kv(fields, "cpu_ns_per_event"), 3)}
                  ],
              else: ratio

          if cf["p50_us"] && kv(fields, "p50_us"),
            do: ratio ++ [{"p50_over_c_us", Float.round(kv(fields, "p50_us") - cf["p50_us"], 1)}],
            else: ratio
      end

    {fields, base}
  end

  defp kv(fields, key), do: Enum.find_value(fields, fn {k, v} -> k == key && v end)

  defp c_figures(nil), do: %{}

  defp c_figures(path) do
    for line <- File.read!(path) |> String.split("\n", trim: true),
        [_, name] <- [Regex.run(~r/"bench":"([^"]+)"/, line)],
        into: %{} do
      nums =
        for key <- ["events_per_s", "p50_us", "cpu_ns_per_event"],
            [_, v] <- [Regex.run(~r/"#{key}":([0-9.]+)/, line)],
            into: %{} do
          {key, String.to_float(if String.contains?(v, "."), do: v, else: v <> ".0")}
        end

      {name, nums}
    end
  end
end

[dir | _] = System.argv() ++ ["build/bench-data"]
BeamBench.main(dir)
