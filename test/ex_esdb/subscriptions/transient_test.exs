defmodule ExESDB.Subscriptions.TransientNifTest do
  # The transient subscription suite on the in-VM NIF backend.
  use ExESDB.SubscriptionsConformance.Transient, backend: ExESDB.Test.NifBackend, async: true
end
