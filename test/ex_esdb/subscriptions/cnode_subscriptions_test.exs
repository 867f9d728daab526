defmodule ExESDB.Subscriptions.TransientCNodeTest do
  # The subscription suites on the C node backend: events pushed by the
  # C node to this node's session (ExESDB.CNode.Session), which sends the
  # NIF backend's messages.
  use ExESDB.SubscriptionsConformance.Transient,
    backend: ExESDB.Test.CNodeBackend,
    async: true
end

defmodule ExESDB.Subscriptions.TransientCreditCNodeTest do
  use ExESDB.SubscriptionsConformance.TransientCredit,
    backend: ExESDB.Test.CNodeBackend,
    async: true
end

defmodule ExESDB.Subscriptions.PersistentCNodeTest do
  use ExESDB.SubscriptionsConformance.Persistent,
    backend: ExESDB.Test.CNodeBackend,
    async: true
end

defmodule ExESDB.Subscriptions.CompetingConsumersCNodeTest do
  use ExESDB.SubscriptionsConformance.CompetingConsumers,
    backend: ExESDB.Test.CNodeBackend,
    async: true
end
