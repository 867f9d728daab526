# Commanded's own EventStorePrefixTestCase against ExESDB.Commanded.Adapter;
# runs only when Commanded is compiled in (COMMANDED_PATH, `make test-commanded`).
if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
  defmodule ExESDB.Commanded.EventStorePrefixTest do
    use Commanded.EventStore.EventStorePrefixTestCase, event_store: ExESDB.Commanded.Adapter

    # The case starts two named, prefixed stores itself.
    def start_event_store(config), do: ExESDB.Commanded.AdapterCase.start_event_store(config)
  end
end
