defmodule ExESDB.Test.ManualSubscriber do
  @moduledoc false
  # A persistent subscription's subscriber, started from a test, that
  # reports what it gets ({:seen, pid, event numbers}) and acks only when
  # told ({:ack, n}).
  import ExUnit.Assertions, only: [flunk: 1]
  alias ExESDB.Subscriptions

  @doc "Subscribes `name` on `stream`: {subscriber, subscription}, or the error."
  def start(store, name, stream) do
    test = self()

    pid =
      spawn(fn ->
        reply = Subscriptions.subscribe_to(store, name, {:by_stream, stream}, self())
        send(test, {:started, self(), reply})
        loop(store, test, nil)
      end)

    receive do
      {:started, ^pid, {:ok, sub}} -> {pid, sub}
      {:started, ^pid, error} -> error
    after
      30_000 -> flunk("subscribe_to did not answer")
    end
  end

  defp loop(store, test, sub) do
    receive do
      {:subscribed, new} ->
        loop(store, test, new)

      {:events, events} ->
        send(test, {:seen, self(), Enum.map(events, & &1.event_number)})
        loop(store, test, sub)

      {:ack, n} ->
        Subscriptions.ack_event(store, sub, n)
        loop(store, test, sub)
    end
  end

  @doc "The event numbers `pid` reported, received until one reaches `n`."
  def seen_upto(pid, n, acc \\ []) do
    if acc != [] and Enum.max(acc) >= n do
      acc
    else
      receive do
        {:seen, ^pid, ns} -> seen_upto(pid, n, acc ++ ns)
      after
        30_000 -> flunk("#{inspect(pid)} saw #{inspect(acc)}, not up to #{n}")
      end
    end
  end
end
