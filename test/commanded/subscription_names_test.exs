# A persistent subscription's name stays bound to its selector, as the
# adapter's moduledoc tells Commanded users (COMMANDED_PATH, `make
# test-commanded`).
if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
  defmodule ExESDB.Commanded.SubscriptionNamesTest do
    use ExESDB.Commanded.AdapterCase

    alias ExESDB.Commanded.Adapter

    defp stop(meta, sub) do
      ref = Process.monitor(sub)
      :ok = Adapter.unsubscribe(meta, sub)
      assert_receive {:DOWN, ^ref, :process, ^sub, _}
    end

    test "a handler's name reused with another subscribe_to is refused until deleted", %{
      event_store_meta: meta
    } do
      {:ok, sub} = Adapter.subscribe_to(meta, :all, "handler", self(), :origin)
      assert_receive {:subscribed, ^sub}
      stop(meta, sub)

      assert {:error, :subscription_definition_changed} =
               Adapter.subscribe_to(meta, "stream-1", "handler", self(), :origin)

      :ok = Adapter.delete_subscription(meta, :all, "handler")
      {:ok, sub} = Adapter.subscribe_to(meta, "stream-1", "handler", self(), :origin)
      assert_receive {:subscribed, ^sub}
    end
  end
end
