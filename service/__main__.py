from service.process.cli import serve_main

serve_main()
