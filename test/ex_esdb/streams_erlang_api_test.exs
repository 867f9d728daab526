defmodule ExESDB.StreamsErlangApiTest do
  # The shared stream/snapshot conformance suite through the Erlang API
  # (:ex_esdb): a case that answers otherwise there than through the
  # Elixir API fails here.
  use ExESDB.StreamsConformance,
    backend: ExESDB.Test.ErlangApi,
    api: ExESDB.Test.ErlangApi,
    async: true
end
