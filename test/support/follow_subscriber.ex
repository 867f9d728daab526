defmodule ExESDB.Test.FollowSubscriber do
  @moduledoc false
  # A persistent subscriber for the cluster tests, run on any node: it
  # reports to `report` every {:subscribed, subscription node} and the
  # event numbers of every message it gets, and acks each message's last
  # event to the subscription it was last told of.

  alias ExESDB.Subscriptions

  @doc "Start one here, subscribed to `name` on `stream`: {:ok, pid, subscription}."
  def start(store, name, stream, report) do
    caller = self()

    pid =
      spawn(fn ->
        reply = Subscriptions.subscribe_to(store, name, {:by_stream, stream}, self())
        send(caller, {:started, self(), reply})
        loop(store, report, nil)
      end)

    receive do
      {:started, ^pid, {:ok, sub}} -> {:ok, pid, sub}
      {:started, ^pid, error} -> error
    end
  end

  defp loop(store, report, sub) do
    receive do
      {:subscribed, new} ->
        send(report, {:subscribed, self(), node(new)})
        loop(store, report, new)

      {:events, events} ->
        send(report, {:seen, self(), Enum.map(events, & &1.event_number)})
        Subscriptions.ack_event(store, sub, List.last(events))
        loop(store, report, sub)
    end
  end
end

defmodule ExESDB.Test.FollowWriter do
  @moduledoc false
  # Appends for the cluster tests that go on across a leader change: an
  # append that fails is sent again, marked retry: true, with the same
  # event ids until it is acknowledged (written once).

  alias ExESDB.{NewEvent, Streams}

  @doc "Append `n` events to `stream`; the acknowledged reply."
  def append(store, stream, n) do
    events =
      for _ <- 1..n, do: NewEvent.new(event_type: "t", event_id: ExESDB.UUID.uuid4(), data: 1)

    again(store, stream, events, Streams.append_events(store, stream, :any, events))
  end

  defp again(_store, _stream, _events, {:ok, _} = ok), do: ok

  defp again(store, stream, events, {:error, _}) do
    Process.sleep(50)
    again(store, stream, events, Streams.append_events(store, stream, :any, events, retry: true))
  end
end
