# Commands per second through a Commanded application (examples/bank) on
# ExESDB.Commanded.Adapter and on Commanded's InMemory adapter, in one run.
# Needs Commanded: COMMANDED_PATH=... MIX_ENV=test mix run bench/commanded_bench.exs [DIR]
# (make bench runs it when COMMANDED_PATH is set). JSON lines like the others.

defmodule CommandedBench do
  alias Bank.{DepositMoney, OpenAccount}

  @seconds String.to_integer(System.get_env("ESDB_BENCH_SECONDS", "3"))

  def main(dir) do
    File.rm_rf!(dir)

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

    File.rm_rf!(dir)
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

Logger.configure(level: :warning)
[dir | _] = System.argv() ++ ["build/bench-data/commanded"]
CommandedBench.main(dir)
