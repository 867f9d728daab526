defmodule ExESDB.StreamsErlangApiTest do
  # The shared stream/snapshot conformance suite through the Erlang API
  # (:ex_esdb): a case that answers otherwise there than through the
  # Elixir API fails here.
  use ExESDB.StreamsConformance,
    backend: ExESDB.Test.ErlangApi,
    api: ExESDB.Test.ErlangApi,
    async: true
end

defmodule ExESDB.StreamsErlangApiAttachedTest do
  # The same suite through :ex_esdb attached (attach/1) to a single-node
  # store that ExESDB.System runs.
  use ExESDB.StreamsConformance,
    backend: ExESDB.Test.ErlangApiSingle,
    api: ExESDB.Test.ErlangApi,
    async: true
end
