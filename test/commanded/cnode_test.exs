# Commanded's own adapter test cases against ExESDB.Commanded.Adapter with
# the store in a C node (backend: :cnode, the C node started by the
# system); runs only when Commanded is compiled in (COMMANDED_PATH,
# `make test-commanded`).
if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
  defmodule ExESDB.Commanded.CNodeAppendEventsTest do
    use ExESDB.Commanded.AdapterCase
    @moduletag cnode: true
    use Commanded.EventStore.AppendEventsTestCase, event_store: ExESDB.Commanded.Adapter
  end

  defmodule ExESDB.Commanded.CNodeSnapshotTest do
    use ExESDB.Commanded.AdapterCase
    @moduletag cnode: true
    use Commanded.EventStore.SnapshotTestCase, event_store: ExESDB.Commanded.Adapter
  end

  defmodule ExESDB.Commanded.CNodeSubscriptionTest do
    use ExESDB.Commanded.AdapterCase
    @moduletag cnode: true
    use Commanded.EventStore.SubscriptionTestCase, event_store: ExESDB.Commanded.Adapter
  end
end
