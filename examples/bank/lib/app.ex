defmodule Bank.App do
  @moduledoc """
  The Commanded application. Its event store is configured at start:

      Bank.App.start_link(event_store: [adapter: ExESDB.Commanded.Adapter, data_dir: dir])
  """
  use Commanded.Application, otp_app: :ex_esdb

  router(Bank.Router)
end
