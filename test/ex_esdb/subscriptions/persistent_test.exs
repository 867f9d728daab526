defmodule ExESDB.Subscriptions.PersistentNifTest do
  # The persistent subscription suite on the in-VM NIF backend.
  use ExESDB.SubscriptionsConformance.Persistent, backend: ExESDB.Test.NifBackend, async: true
end
