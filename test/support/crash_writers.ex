defmodule ExESDB.Test.CrashWriters do
  @moduledoc false
  # Runs on a peer node in the crash test (test modules are not loaded
  # there; this one is compiled into the test build): starts the store and
  # writers that append batches and report each acknowledged one.

  alias ExESDB.{NewEvent, Streams}

  def run(opts, parent, round, writers) do
    {:ok, sup} = ExESDB.System.start_link(opts)
    Process.unlink(sup)

    for w <- 1..writers do
      spawn(fn -> loop(opts[:store_id], parent, "crash-#{round}-#{w}", 0) end)
    end

    :ok
  end

  defp loop(store, parent, stream, version) do
    n = :rand.uniform(5)

    events =
      for _ <- 1..n, do: %NewEvent{event_id: ExESDB.UUID.uuid4(), event_type: "c", data: version}

    {:ok, new_version} = Streams.append_events(store, stream, version, events)
    send(parent, {:acked, stream, version, Enum.map(events, & &1.event_id)})
    loop(store, parent, stream, new_version)
  end
end
