defmodule ExESDB.Native do
  @moduledoc false
  # Calls into the NIF that are answered asynchronously: the NIF queues the
  # command and the core's writer thread sends {Ref, Reply} when it is
  # committed (or refused).

  @spec call(ExESDB.Store.t(), (reference() -> :ok | {:error, term()})) :: term()
  def call(%ExESDB.Store{} = store, submit) do
    ref = make_ref()

    case submit.(ref) do
      :ok -> await(store, ref)
      {:error, _} = error -> error
    end
  end

  @doc """
  Wait the store's timeout for the reply to the command sent with `ref`,
  then give up: `{:error, :timeout}` when the command was withdrawn from
  the writer queue (it is never applied), `{:error, :outcome_unknown}`
  when the writer had taken it (it may be applied; its late reply comes
  to the mailbox).
  """
  @spec await(ExESDB.Store.t(), reference()) :: term()
  def await(%ExESDB.Store{timeout: timeout} = store, ref) do
    receive do
      {^ref, reply} -> reply
    after
      timeout -> give_up(store, ref)
    end
  end

  defp give_up(%ExESDB.Store{handle: handle}, ref) do
    case :ex_esdb_nif.cancel(handle, ref) do
      :ok ->
        {:error, :timeout}

      :not_queued ->
        receive do
          {^ref, reply} -> reply
        after
          0 -> {:error, :outcome_unknown}
        end
    end
  end
end
