defmodule ExESDB.Demo do
  @moduledoc """
  What `make run` starts: a store in `./data` (`EX_ESDB_DATA_DIR`
  overrides), a few producers appending deposits to account streams and an
  observer printing what arrives in `$all`.
  """

  alias ExESDB.{NewEvent, Streams}

  @store :demo

  @doc "Start the demo store, producers and observer; prints what to try."
  @spec start(keyword()) :: :ok
  def start(opts \\ []) do
    opts = Keyword.merge([store_id: @store], opts)
    {:ok, sup} = ExESDB.System.start_link(opts)
    # `mix run -e` evaluates in a process that ends before the shell opens.
    Process.unlink(sup)
    {:ok, from} = last_position()

    spawn(fn -> observe(from + 1) end)
    for n <- 1..3, do: spawn(fn -> produce("account-#{n}", 5) end)

    IO.puts("""

    ExESDB demo: store #{inspect(@store)} in #{ExESDB.Options.store_path(ExESDB.Options.resolve(opts))}
    Three producers append 5 deposits each; the observer prints them.

    Try:
      ExESDB.Streams.get_events(:demo, "account-1", 1, 10)
      ExESDB.Streams.append_events(:demo, "account-9", :any, [%ExESDB.NewEvent{event_type: "opened", data: %{owner: "you"}}])
      {:ok, s} = ExESDB.Streams.stream_backward(:demo, "account-2"); Enum.take(s, 2)
      ExESDB.Streams.get_streams(:demo)
      ExESDB.Snapshots.record_snapshot(:demo, %ExESDB.Schema.SnapshotRecord{source_uuid: "account-1", source_version: 5, source_type: "Account", data: %{balance: 50}})
      ExESDB.System.stats(:demo)
      ExESDB.Streams.delete_stream(:demo, "account-3", :any)

    Leave the shell with Ctrl-C twice (or System.halt()).
    """)
  end

  defp last_position do
    case ExESDB.System.stats(@store) do
      {:ok, %{events: last}} -> {:ok, last}
      error -> error
    end
  end

  defp produce(_stream, 0), do: :ok

  defp produce(stream, n) do
    Process.sleep(300 + :rand.uniform(700))
    event = %NewEvent{event_type: "deposited", data: %{amount: :rand.uniform(100)}}

    case Streams.append_events(@store, stream, :any, [event]) do
      {:ok, _} ->
        produce(stream, n - 1)

      # e.g. a stream deleted in an earlier session: this producer stops
      {:error, reason} ->
        IO.puts("  [producer] #{stream}: #{inspect(reason)}, stopping")
    end
  end

  # Polls $all until subscriptions push events instead.
  defp observe(from) do
    Process.sleep(200)

    case Streams.get_all_events(@store, from, 100) do
      {:ok, []} ->
        observe(from)

      {:ok, events} ->
        for e <- events do
          IO.puts(
            "  [observer] ##{e.position} #{e.stream_id} v#{e.event_number} #{e.event_type} #{inspect(e.data)}"
          )
        end

        observe(List.last(events).position + 1)

      {:error, _} ->
        :ok
    end
  end
end
