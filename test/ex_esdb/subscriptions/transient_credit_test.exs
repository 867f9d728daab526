defmodule ExESDB.Subscriptions.TransientCreditNifTest do
  # The transient credit suite on the in-VM NIF backend.
  use ExESDB.SubscriptionsConformance.TransientCredit,
    backend: ExESDB.Test.NifBackend,
    async: true
end
