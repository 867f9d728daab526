defmodule ExESDB.StreamsNifTest do
  # The shared stream/snapshot conformance suite on the in-VM NIF backend.
  use ExESDB.StreamsConformance, backend: ExESDB.Test.NifBackend, async: true
end
