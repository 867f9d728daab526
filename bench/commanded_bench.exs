# Commands per second through a Commanded application (examples/bank) on
# ExESDB.Commanded.Adapter and on Commanded's InMemory adapter, in one run;
# then the append -> delivery latency through the adapter.
# Needs Commanded: COMMANDED_PATH=... MIX_ENV=test mix run bench/commanded_bench.exs [DIR]
# (make bench runs it when COMMANDED_PATH is set). JSON lines like the others.
# ESDB_BENCH_ONLY: a comma-separated subset of commanded_dispatch,
# commanded_latency_term, commanded_latency_json,
# commanded_latency_json_consolidated.

defmodule CommandedBench do
  alias Bank.{DepositMoney, OpenAccount}

  @seconds String.to_integer(System.get_env("ESDB_BENCH_SECONDS", "3"))

  def main(dir) do
    File.rm_rf!(dir)
    if run?("commanded_dispatch"), do: dispatch(dir)
    CommandedLatencyBench.main(dir)
    File.rm_rf!(dir)
  end

  def run?(name) do
    only = System.get_env("ESDB_BENCH_ONLY", "")
    only == "" or name in String.split(only, ",")
  end

  defp dispatch(dir) do
    adapters = [
      {"commanded_dispatch_exesdb",
       [adapter: ExESDB.Commanded.Adapter, data_dir: dir, store_id: :bench]},
      {"commanded_dispatch_inmemory",
       [
         adapter: Commanded.EventStore.Adapters.InMemory,
         serializer: Commanded.Serialization.JsonSerializer
       ]}
    ]

    results =
      for {name, event_store} <- adapters do
        {:ok, app} = Bank.App.start_link(event_store: event_store)

        many =
          run(fn i, n -> %OpenAccount{account_number: "a-#{i}-#{n}", initial_balance: 1} end, 16)

        :ok = Bank.App.dispatch(%OpenAccount{account_number: "hot", initial_balance: 0})
        hot = run(fn _i, _n -> %DepositMoney{account_number: "hot", amount: 1} end, 1)
        Process.unlink(app)
        ref = Process.monitor(app)
        Process.exit(app, :shutdown)
        receive do: ({:DOWN, ^ref, _, _, _} -> :ok)

        IO.puts(
          ~s({"bench":"#{name}","commands_per_s":#{many},"hot_aggregate_commands_per_s":#{hot},) <>
            ~s("processes":16,"seconds":#{@seconds}})
        )

        {name, many, hot}
      end

    [{_, e, eh}, {_, m, mh}] = results

    IO.puts(
      ~s({"bench":"commanded_dispatch_ratio","ratio":#{Float.round(e / m, 3)},) <>
        ~s("hot_aggregate_ratio":#{Float.round(eh / mh, 3)}})
    )
  end

  # `procs` processes dispatching for @seconds; commands per second.
  defp run(command, procs) do
    parent = self()
    deadline = System.monotonic_time(:millisecond) + @seconds * 1000
    t0 = System.monotonic_time(:microsecond)

    for i <- 1..procs do
      spawn_link(fn -> send(parent, {:done, loop(command, i, 0, deadline)}) end)
    end

    total = Enum.sum(for _ <- 1..procs, do: receive(do: ({:done, n} -> n)))
    Float.round(total / ((System.monotonic_time(:microsecond) - t0) / 1.0e6), 1)
  end

  defp loop(command, i, n, deadline) do
    if System.monotonic_time(:millisecond) >= deadline do
      n
    else
      :ok = Bank.App.dispatch(command.(i, n))
      loop(command, i, n + 1, deadline)
    end
  end
end

defmodule CommandedLatencyBench do
  # The append -> delivery latency through the adapter: one event at a time
  # appended with append_to_stream/4 (durable, the default durability),
  # received by a Commanded-style subscriber of a persistent $all
  # subscription made with subscribe_to/6 (it stamps the arrival, then
  # acks, as Commanded's handlers do). Latency from append_to_stream's
  # return to the arrival (0 when the event arrived first) and from the
  # call. With the JSON serializer, what one decode costs on the way
  # (Mapper.to_recorded_event/3), and its two parts: Jason.decode!/2 and
  # Commanded's JsonDecoder protocol dispatch. The _consolidated run
  # consolidates every protocol first, as a release build does (the test
  # build this runs in cannot: Commanded's test cases @derive at test time).

  alias Commanded.EventStore.EventData
  alias Commanded.Serialization.{JsonDecoder, JsonSerializer}
  alias ExESDB.Commanded.{Adapter, Mapper}

  @n String.to_integer(System.get_env("ESDB_LATENCY_EVENTS", "2000"))

  def main(dir) do
    if CommandedBench.run?("commanded_latency_term"), do: run(dir, "commanded_latency_term", nil)

    if CommandedBench.run?("commanded_latency_json"),
      do: run(dir, "commanded_latency_json", JsonSerializer)

    if CommandedBench.run?("commanded_latency_json_consolidated") do
      consolidate_protocols()
      run(dir, "commanded_latency_json_consolidated", JsonSerializer)
    end
  end

  defp run(dir, name, serializer) do
    System.cmd("sync", [])

    {:ok, children, meta} =
      Adapter.child_spec(__MODULE__, name: name, data_dir: dir, serializer: serializer)

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    bench = self()
    sub = spawn_link(fn -> subscriber(meta, bench) end)
    receive do: ({:ready, ^sub} -> :ok)

    samples =
      for i <- 1..@n do
        t0 = System.monotonic_time(:microsecond)
        :ok = Adapter.append_to_stream(meta, "lat", :any_version, [event(i)])
        t1 = System.monotonic_time(:microsecond)
        receive do: ({:arrived, ^i, t2} -> {max(t2 - t1, 0), t2 - t0, t1 - t0})
      end

    Process.unlink(sub)
    Process.exit(sub, :kill)
    decode = if serializer, do: decode_costs(meta), else: []
    Supervisor.stop(sup)
    File.rm_rf!(Path.join(dir, Atom.to_string(meta.store)))

    [after_return, from_call, append] =
      for k <- 0..2, do: samples |> Enum.map(&elem(&1, k)) |> Enum.sort()

    fields =
      [
        {"p50_us", pct(after_return, 50)},
        {"p99_us", pct(after_return, 99)},
        {"from_append_call_p50_us", pct(from_call, 50)},
        {"from_append_call_p99_us", pct(from_call, 99)},
        {"append_p50_us", pct(append, 50)},
        {"n", @n},
        {"protocols_consolidated", Protocol.consolidated?(JsonDecoder)}
      ] ++ decode

    IO.puts("{" <> Enum.map_join([{"bench", name} | fields], ",", &field/1) <> "}")
  end

  defp field({k, v}) when is_binary(v), do: ~s("#{k}":"#{v}")
  defp field({k, v}), do: ~s("#{k}":#{v})

  defp event(i) do
    %EventData{
      event_type: "Elixir.Bank.MoneyDeposited",
      data: %Bank.MoneyDeposited{account_number: "lat", amount: i, balance: i},
      metadata: %{"user" => "bench"}
    }
  end

  # A Commanded-style subscriber: stamps each event's arrival, acks it,
  # reports it.
  defp subscriber(meta, bench) do
    {:ok, sub} = Adapter.subscribe_to(meta, :all, "latency", self(), :origin, [])
    receive do: ({:subscribed, ^sub} -> send(bench, {:ready, self()}))
    loop(meta, sub, bench)
  end

  defp loop(meta, sub, bench) do
    receive do
      {:events, events} ->
        t = System.monotonic_time(:microsecond)
        :ok = Adapter.ack_event(meta, sub, List.last(events))
        for e <- events, do: send(bench, {:arrived, e.stream_version, t})
        loop(meta, sub, bench)
    end
  end

  # What one event's decode costs in this build: the whole mapping, and
  # its parts, medians of 1,000.
  defp decode_costs(meta) do
    {:ok, [record]} = ExESDB.Streams.get_events(meta.store, "lat", 1, 1)
    type = Commanded.EventStore.TypeProvider.to_struct(record.event_type)
    decoded = Jason.decode!(record.data, keys: :atoms)

    [
      {"decode_us_p50", median(fn -> Mapper.to_recorded_event(record, JsonSerializer, :all) end)},
      {"jason_decode_us_p50", median(fn -> Jason.decode!(record.data, keys: :atoms) end)},
      {"json_decoder_protocol_us_p50", median(fn -> JsonDecoder.decode(struct(type, decoded)) end)}
    ]
  end

  defp median(fun) do
    times =
      for _ <- 1..1000 do
        t0 = System.monotonic_time(:nanosecond)
        fun.()
        System.monotonic_time(:nanosecond) - t0
      end

    Float.round(pct(Enum.sort(times), 50) / 1000, 1)
  end

  defp pct(sorted, p), do: Enum.at(sorted, min(length(sorted) - 1, div(length(sorted) * p, 100)))

  # What Mix does for a release build, here at run time: every protocol
  # in the code path consolidated with the implementations found there.
  defp consolidate_protocols do
    paths = :code.get_path()

    for protocol <- Protocol.extract_protocols(paths) do
      {:ok, binary} = Protocol.consolidate(protocol, Protocol.extract_impls(protocol, paths))
      :code.purge(protocol)
      {:module, ^protocol} = :code.load_binary(protocol, ~c"consolidated", binary)
    end
  end
end

Logger.configure(level: :warning)
[dir | _] = System.argv() ++ ["build/bench-data/commanded"]
CommandedBench.main(dir)
