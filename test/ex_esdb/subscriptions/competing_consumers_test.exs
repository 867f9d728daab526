defmodule ExESDB.Subscriptions.CompetingConsumersNifTest do
  # The competing consumers suite on the in-VM NIF backend.
  use ExESDB.SubscriptionsConformance.CompetingConsumers,
    backend: ExESDB.Test.NifBackend,
    async: true
end
