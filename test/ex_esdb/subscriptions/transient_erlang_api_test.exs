defmodule ExESDB.Subscriptions.TransientErlangApiTest do
  # The transient subscription suites through the Erlang API (:ex_esdb):
  # a case that answers otherwise there than through the Elixir API
  # fails here.
  use ExESDB.SubscriptionsConformance.Transient,
    backend: ExESDB.Test.ErlangApi,
    api: ExESDB.Test.ErlangApi,
    async: true
end

defmodule ExESDB.Subscriptions.TransientCreditErlangApiTest do
  use ExESDB.SubscriptionsConformance.TransientCredit,
    backend: ExESDB.Test.ErlangApi,
    api: ExESDB.Test.ErlangApi,
    async: true
end
