defmodule ExESDB.Chaos.Sampler do
  @moduledoc false
  # Issue 14's stall hunt (docs/RELIABILITY.md, "What the samples
  # showed"): with ESDB_CHAOS_SAMPLE=1 (`make chaos CHAOS_SAMPLE=1`) a
  # chaos run samples every node every 20 ms:
  #
  # - the replica's progress (ExESDB.Cluster.info/1 over :erpc, 200 ms
  #   at most): term, leader?, raft's commit and last log index, the
  #   store's applied index, how long ago raft's loop last ran, and how
  #   long the node took to answer;
  # - from /proc/<pid>/task/<tid>/{stat,schedstat} of each peer VM: the
  #   state (R running or runnable, S sleeping, D waiting on the disk)
  #   and the time run and waited in the run queue (ns, cumulative) of
  #   the replica's threads (esdb-raft: the raft loop, and libuv's
  #   workers, which inherit its name; esdb-writer) and of the VM's
  #   normal schedulers.
  #
  # Rows go to samples.jsonl beside the history, on the history's clock
  # (History.now/0, native monotonic): [t, node, "info", {...}] and
  # [t, node, "threads", [[tid, name, state, run_ns, wait_ns], ...]].

  alias ExESDB.Chaos.{Cluster, History}

  @every 20
  # thread names kept (the rest of a VM's threads are left out)
  @names ~r/^(esdb-|\d+_scheduler$)/

  def enabled?, do: System.get_env("ESDB_CHAOS_SAMPLE") not in [nil, "", "0"]

  @doc "Start sampling ctx's nodes (the spare too); stop/2 writes the rows."
  def start(ctx) do
    table = :ets.new(:chaos_samples, [:duplicate_bag, :public, write_concurrency: true])
    parent = self()
    nodes = ctx.nodes ++ [ctx.joiner]

    pollers =
      [spawn_link(fn -> loop(parent, fn -> threads(ctx, table) end) end)] ++
        for node <- nodes,
            do: spawn_link(fn -> loop(parent, fn -> info(ctx.store, node, table) end) end)

    %{table: table, pollers: pollers}
  end

  @doc "Stop; write the rows to dir/samples.jsonl (dir nil: drop them)."
  def stop(%{table: table, pollers: pollers}, dir) do
    ExESDB.Chaos.Leadership.stop_pollers(pollers)

    if dir do
      {:ok, f} =
        :file.open(Path.join(dir, "samples.jsonl"), [
          :write,
          :raw,
          :binary,
          {:delayed_write, 1_048_576, 1000}
        ])

      table
      |> :ets.tab2list()
      |> Enum.sort()
      |> Enum.each(fn row -> :ok = :file.write(f, [ExESDB.Chaos.JSON.encode(row), ?\n]) end)

      :ok = :file.close(f)
    end

    :ets.delete(table)
    :ok
  end

  # every @every ms from the last start (a slow sample delays the next)
  defp loop(parent, sample) do
    sample.()

    receive do
      {:stop, ^parent} -> :ok
    after
      @every -> loop(parent, sample)
    end
  end

  defp info(store, node, table) do
    t = History.now()

    row =
      case Cluster.try_info(store, node, 200) do
        nil ->
          %{answer_us: us_since(t)}

        i ->
          i
          |> Map.take([:term, :leader?, :commit, :last_index, :applied, :loop_age_us])
          |> Map.put(:answer_us, us_since(t))
      end

    :ets.insert(table, {t, node, :info, row})
  end

  defp us_since(t), do: System.convert_time_unit(History.now() - t, :native, :microsecond)

  # the named threads of every running peer VM (thread list cached per
  # pid, rescanned every 50 samples: libuv starts its workers later)
  defp threads(ctx, table) do
    t = History.now()
    tick = Process.get(:tick, 0)
    Process.put(:tick, tick + 1)

    for {node, pid} <- Agent.get(ctx.state, & &1.os_pids) do
      tids =
        case Process.get({:tids, pid}) do
          {tids, at} when tick - at < 50 -> tids
          _ -> scan(pid, tick)
        end

      rows = for {tid, name} <- tids, s = stat(pid, tid), do: [tid, name | s]

      if rows != [], do: :ets.insert(table, {t, node, :threads, rows})
    end
  end

  defp scan(pid, tick) do
    dir = "/proc/#{pid}/task"

    tids =
      case File.ls(dir) do
        {:ok, ls} ->
          for tid <- ls,
              {:ok, name} <- [File.read("#{dir}/#{tid}/comm")],
              name = String.trim_trailing(name),
              name =~ @names,
              do: {tid, name}

        _ ->
          []
      end

    Process.put({:tids, pid}, {tids, tick})
    tids
  end

  defp stat(pid, tid) do
    base = "/proc/#{pid}/task/#{tid}"

    with {:ok, st} <- File.read(base <> "/stat"),
         {:ok, ss} <- File.read(base <> "/schedstat"),
         [_, after_name] <- String.split(st, ") ", parts: 2),
         [run, wait | _] <- String.split(ss) do
      [String.first(after_name), String.to_integer(run), String.to_integer(wait)]
    else
      _ -> nil
    end
  end
end
