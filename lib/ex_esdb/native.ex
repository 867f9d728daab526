defmodule ExESDB.Native do
  @moduledoc false
  # Calls into the NIF that are answered asynchronously: the NIF queues the
  # command and the core's writer thread sends {Ref, Reply} when it is
  # committed (or refused).

  @spec call(ExESDB.Store.t(), (reference() -> :ok | {:error, term()})) :: term()
  def call(%ExESDB.Store{timeout: timeout}, submit) do
    ref = make_ref()

    case submit.(ref) do
      :ok ->
        receive do
          {^ref, reply} -> reply
        after
          timeout -> {:error, :timeout}
        end

      {:error, _} = error ->
        error
    end
  end
end
