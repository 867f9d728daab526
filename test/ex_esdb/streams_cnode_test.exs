defmodule ExESDB.StreamsCNodeTest do
  # The shared stream/snapshot conformance suite on the C node backend:
  # the store in priv/ex_esdb_cnode, reached over distribution.
  use ExESDB.StreamsConformance, backend: ExESDB.Test.CNodeBackend, async: true
end
