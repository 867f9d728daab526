# Commanded's own SubscriptionTestCase against ExESDB.Commanded.Adapter; runs only
# when Commanded is compiled in (COMMANDED_PATH, `make test-commanded`).
if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
  defmodule ExESDB.Commanded.SubscriptionTest do
    use ExESDB.Commanded.AdapterCase
    use Commanded.EventStore.SubscriptionTestCase, event_store: ExESDB.Commanded.Adapter
  end
end
