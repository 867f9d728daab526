defmodule ExESDB.GatewayAPITest do
  # ExESDB.GatewayAPI on a single-node store.
  use ExESDB.GatewayAPIConformance, backend: ExESDB.Test.NifBackend, async: true
end
