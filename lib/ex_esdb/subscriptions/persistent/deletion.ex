defmodule ExESDB.Subscriptions.Persistent.Deletion do
  @moduledoc false
  # Deletes the checkpoint of a persistent subscription that is not
  # running, holding the subscription's name (registered as the
  # subscription would be) meanwhile: a subscribe_to racing the delete
  # finds the name taken, waits until this process is gone and starts
  # then, without the deleted checkpoint. It answers its caller from
  # init and never runs past it.
  use GenServer, restart: :temporary

  alias ExESDB.Subscriptions.Persistent

  def start_link({store, name, _caller, _ref} = args),
    do: GenServer.start_link(__MODULE__, args, name: Persistent.via(store.store_id, name))

  @impl true
  def init({store, name, caller, ref}) do
    reply = store.backend.submit(store, {:checkpoint_delete, name}, [])
    send(caller, {:checkpoint_deleted, ref, reply})
    :ignore
  end
end
