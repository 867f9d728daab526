defmodule ExESDB.Subscriptions.Persistent.Deletion do
  @moduledoc false
  # Deletes the checkpoint of a persistent subscription that is not
  # running, holding the subscription's name (registered as the
  # subscription would be) meanwhile: a subscribe_to racing the delete
  # finds the name taken, waits until this process is gone and starts
  # then, without the deleted checkpoint. The delete runs after init (a
  # store round, a raft round in cluster mode, must not hold the
  # subscriptions' supervisor); it answers its caller and stops.
  use GenServer, restart: :temporary

  alias ExESDB.Subscriptions.Persistent

  def start_link({store, name, _caller, _ref} = args),
    do: GenServer.start_link(__MODULE__, args, name: Persistent.via(store.store_id, name))

  @impl true
  def init(args), do: {:ok, args, {:continue, :delete}}

  @impl true
  def handle_continue(:delete, {store, name, caller, ref} = args) do
    reply = store.backend.submit(store, {:checkpoint_delete, name}, [])
    send(caller, {:checkpoint_deleted, ref, reply})
    {:stop, :normal, args}
  end
end
