"""The scheduled workflow's steps (`bot actions ...`) and its job summary.

Offers: the plan and convert steps of the Actions matrix (`cli`) and the step summary
(`summary`, standard library only: the report step runs without the project's dependencies).
"""
